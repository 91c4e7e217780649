"""`smartstock train cnn`: image folder -> trained CNN -> ONNX + TFLite float + TFLite int8 + manifest + evaluation.

The recipe (TrainRecipe) is the one place the defaults live; make_defect_model and the tests use it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smartstock.errors import InputError

logger = logging.getLogger(__name__)


@dataclass
class TrainRecipe:
    image_size: int = 96
    color: str = "auto"  # auto | gray | bgr
    alpha: float = 1.0  # width multiplier of the CNN
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 3e-3
    patience: int = 10  # early stopping on validation loss
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    augment: bool = True
    target_recall: float = 0.99
    seed: int = 0
    model_id: str = "defect-cnn"
    release: int = 1
    backbone_weights: str | None = None  # local MobileNetV2 .h5; never downloaded
    formats: tuple[str, ...] = ("onnx", "tflite", "tflite_int8")
    description: str = ""
    save_keras: bool = True
    verbose: int = 2  # Keras fit progress: 2 = one line per epoch


def _configure_tf(seed: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    threads = int(os.environ.get("SMARTSTOCK_TRAIN_THREADS", "0"))
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def train_and_export(data: Path, out: Path, recipe: TrainRecipe | None = None) -> dict[str, Any]:
    """Whole pipeline; returns a summary (paths, evaluation, parity). Writes everything into `out`."""
    recipe = recipe or TrainRecipe()
    if recipe.image_size < 16 or recipe.image_size > 512:
        raise InputError(f"--image-size {recipe.image_size} is out of range", hint="use 16..512 (default 96)")
    if recipe.epochs < 1:
        raise InputError(f"--epochs {recipe.epochs} must be at least 1")
    t0 = time.perf_counter()
    from training.data import class_weights, load_dataset, tf_dataset

    ds = load_dataset(data, image_size=recipe.image_size, color=recipe.color, val_fraction=recipe.val_fraction,
                      test_fraction=recipe.test_fraction, seed=recipe.seed)
    logger.info("dataset %s: %s", data, ds.summary())
    _configure_tf(recipe.seed)
    import keras

    from training.cnn import build_model, count_flops
    from training.evaluate import choose_thresholds, evaluate, write_evaluation
    from training.export import Exporter

    n = len(ds.labels)
    model = build_model(recipe.image_size, ds.spec.channels, n, alpha=recipe.alpha,
                        backbone_weights=Path(recipe.backbone_weights) if recipe.backbone_weights else None)
    steps = max(1, int(np.ceil(len(ds.train.y) / recipe.batch_size))) * recipe.epochs
    lr = keras.optimizers.schedules.CosineDecay(recipe.learning_rate, decay_steps=steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=recipe.patience,
                                               restore_best_weights=True)]
    history = model.fit(tf_dataset(ds.train, recipe.batch_size, augment=recipe.augment, seed=recipe.seed),
                        validation_data=tf_dataset(ds.val, 128, augment=False, seed=recipe.seed),
                        epochs=recipe.epochs, class_weight=class_weights(ds.train.y, n), callbacks=callbacks,
                        verbose=recipe.verbose)
    train_s = time.perf_counter() - t0

    val_scores = model.predict(ds.val.x.astype(np.float32), verbose=0, batch_size=128)
    thresholds = choose_thresholds(ds.val.y, val_scores, ds.labels, ds.defect_labels, recipe.target_recall)
    test_scores = model.predict(ds.test.x.astype(np.float32), verbose=0, batch_size=128)
    report = evaluate(ds.test.y, test_scores, ds.labels, ds.defect_labels, thresholds, recipe.target_recall)
    report.update(split="test", data=str(data), epochs_run=len(history.history["loss"]),
                  train_seconds=round(train_s, 1), parameters=int(model.count_params()), flops=count_flops(model),
                  recipe={k: v for k, v in asdict(recipe).items() if k != "verbose"}, skipped=ds.skipped)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {k: report[k] for k in ("accuracy", "argmax_accuracy", "defect_recall", "defect_precision",
                                      "false_alarm_rate", "roc_auc", "images") if k in report}
    metrics.update(flops=report["flops"], parameters=report["parameters"], split="test")
    write_evaluation(out, report)  # written again below with the export parity figures
    exporter = Exporter(model, out, spec=ds.spec, labels=ds.labels, defect_labels=ds.defect_labels,
                        thresholds=thresholds, heldout_x=ds.test.x, heldout_y=ds.test.y,
                        representative_x=ds.train.x[np.random.default_rng(recipe.seed).permutation(len(ds.train.y))],
                        model_id=recipe.model_id, release=recipe.release, metrics=metrics,
                        description=recipe.description)
    methods = {"onnx": exporter.export_onnx, "tflite": exporter.export_tflite_float,
               "tflite_int8": exporter.export_tflite_int8}
    paths = {fmt: str(methods[fmt]()) for fmt in recipe.formats}
    if recipe.save_keras:  # the training-side model, for benchmarks and fine-tuning; never used on the device
        model.save(out / "defect.keras")
        paths["keras"] = str(out / "defect.keras")
    report["parity"] = {fmt: a.parity.model_dump() for fmt, a in exporter.manifest.artifacts.items() if a.parity}
    write_evaluation(out, report)
    return {"out": str(out), "files": paths, "evaluation": report, "seconds": round(time.perf_counter() - t0, 1),
            "model": model, "dataset": ds}


def run(args: argparse.Namespace) -> int:
    from training.goodonly_export import is_good_only

    if is_good_only(args.data):  # only ok/: a good-parts-only detector (issue 14), no TensorFlow involved
        from training.goodonly_export import run as run_good_only

        return run_good_only(args)
    recipe = TrainRecipe(seed=args.seed)
    if args.epochs is not None:
        recipe.epochs = args.epochs
    if args.image_size is not None:
        recipe.image_size = args.image_size
    if getattr(args, "backbone_weights", None):  # optional local ImageNet MobileNetV2 weights (.h5)
        recipe.backbone_weights = str(args.backbone_weights)
    result = train_and_export(args.data, args.out, recipe)
    ev = result["evaluation"]
    from smartstock.vision.metrics import format_report

    print(format_report(ev))
    print()
    for fmt, p in ev["parity"].items():
        print(f"{fmt:12s} parity with Keras on {p['images']} test images: labels agree {p['label_agreement']:.2%}, "
              f"max |score diff| {p['max_abs_diff']:.2g}, accuracy {p['accuracy']:.4f}")
    print(f"wrote {', '.join(Path(p).name for p in result['files'].values())}, manifest.json, evaluation.json "
          f"to {result['out']} in {result['seconds']:.0f} s")
    return 0


def main() -> int:  # `python -m training.cnn_cli --data D --out O` (same as `smartstock train cnn`)
    p = argparse.ArgumentParser(prog="python -m training.cnn_cli")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(p.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
