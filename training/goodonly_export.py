"""`smartstock train cnn` on a folder with only good parts: build, calibrate and export a good-only detector.

Writes `goodonly.onnx` (backbone + memory bank + nearest-neighbour search in one graph), its
manifest.json (kind defect-classifier, labels [ok, defect], threshold 0.5 on the calibrated score,
an `anomaly` section, golden samples) and evaluation.json, plus the backbone's licence notice.
The export is loaded back with the device backend and compared with the numpy scores (parity).

Like the classifier it is also exported to TFLite (training/goodonly_tflite.py, needs TensorFlow):
`goodonly.tflite` (float32, the same parameters; checked against the ONNX graph's scores and heat maps
on the held-out good images) and `goodonly_int8.tflite` (int8 backbone, float distance tail, with its
own ring statistics and threshold recalibrated on the same held-out good images through its own int8
features: manifest `anomaly.int8`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from smartstock.errors import InputError, ModelError
from smartstock.runtime.artifact import Artifact, Parity
from smartstock.runtime.golden import encode_array
from smartstock.runtime.hashing import file_sha256
from smartstock.vision.images import GOOD_LABEL_NAMES, read_image, scan_image_folder
from smartstock.vision.manifest import AnomalyCalibration, AnomalySpec, Manifest, OutputSpec, write_manifest
from smartstock.vision.preprocess import preprocess_batch
from training.backbone_export import BACKBONE_FILE
from training.goodonly import (BOUND_CONFIDENCE, GoodOnlyModel, GoodOnlyRecipe, PatchFeatures, fit,
                               images_needed)
from training.goodonly_split import hold_out, source_of

logger = logging.getLogger(__name__)

MODEL_FILE = "goodonly.onnx"
FILES = {"onnx": MODEL_FILE, "tflite": "goodonly.tflite", "tflite_int8": "goodonly_int8.tflite"}
FORMATS = tuple(FILES)
DEFECT_LABEL = "defect"
PARITY_TOLERANCE = 1e-3   # ONNX Runtime vs numpy on the squashed score (float32 sums in another order)
#: TFLite float vs the ONNX graph, scores and heat maps on the held-out good images (the Keras and ONNX
#: backbones differ by ~6e-5 in their block outputs; measured 6e-6 on the squashed scores at 64 px)
TFLITE_TOLERANCE = 1e-3
#: int8 golden outputs: int8 kernels of other CPUs (ARM vs x86) may round a feature by one step, which moves a
#: patch distance a little; the squashed scores of the golden images are allowed this much.
INT8_GOLDEN_TOLERANCE = 0.02
#: int8 detector vs the scores computed from the distances read back from its own heat map (same flatbuffer,
#: other constants in the float tail: measured 3e-8)
INT8_PARITY_TOLERANCE = 1e-3
#: int8 vs float detector, rank correlation of the patch scores over the held-out good images: warned below this
INT8_RANK_WARNING = 0.8
REPRESENTATIVE = 100      # good training images the int8 quantisation ranges are taken from
GOLDEN_COUNT = 4


def is_good_only(data: Path) -> bool:
    """True when the folder's only class subfolder is a good-part folder (ok/, good/ ...)."""
    folder = scan_image_folder(data, min_classes=1)
    return len(folder.labels) == 1 and folder.labels[0].lower() in GOOD_LABEL_NAMES


def _squash(raw: np.ndarray, threshold: float, scale: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(np.asarray(raw, np.float64) - threshold) / scale))


def export(model: GoodOnlyModel, feats: PatchFeatures, calib: Sequence[np.ndarray], out: Path, *,
           good_label: str = "ok", metrics: dict[str, Any] | None = None, formats: Sequence[str] = ("onnx",),
           representative: Sequence[np.ndarray] = ()) -> Path:
    """Write goodonly.onnx (+ the TFLite `formats`) + manifest.json into `out`; returns the ONNX model path.
    `representative`: good training images for the int8 quantisation ranges (the calibration images otherwise)."""
    import onnx

    from smartstock.runtime.backends import load_backend
    from training.goodonly_graph import detector_model, grid_stride

    r, cal = model.recipe, model.calibration
    out.mkdir(parents=True, exist_ok=True)
    path = out / MODEL_FILE
    onnx.save(detector_model(r.layers, r.image_size, model.bank, cal.threshold, cal.scale,
                             patch_stride=r.patch_stride, border=r.border, pad=r.pad, top_k=r.top_k,
                             position=model.position, neighbours=r.neighbours), str(path))
    spec = r.spec()
    x = preprocess_batch(list(calib), spec)
    backend = load_backend(path, "onnx", threads=r.threads)
    got = backend.run(x.astype(np.float32))
    raw, _ = model.raw_scores(feats, list(calib))
    expected = _squash(raw, cal.threshold, cal.scale)
    diff = float(np.max(np.abs(got[:, 1] - expected)))
    agree = float(np.mean((got[:, 1] >= 0.5) == (raw >= cal.threshold)))
    logger.info("%s: %d calibration images, max |score diff| vs numpy %.3g, decisions agree %.2f%%",
                path.name, len(x), diff, agree * 100)
    if diff > PARITY_TOLERANCE:
        raise ModelError(f"{path}: ONNX detector disagrees with the numpy scores (max diff {diff:.3g})",
                         hint="an onnx/onnxruntime version problem: check the installed versions")
    golden = x[:GOLDEN_COUNT].astype(np.uint8)
    manifest = Manifest(
        model_id=r.model_id, release=r.release, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        description=r.description or (f"good-parts-only detector ({'+'.join(r.layers)}, {r.image_size} px, patch "
                                      f"stride {grid_stride(r.layers, r.patch_stride)})"),
        input=spec.model_copy(update={"name": "image", "dtype": "float32"}),
        output=OutputSpec(meaning="[1 - s, s], s = sigmoid((image score - anomaly.threshold) / anomaly.scale), the image "
                                  "score being the mean of the anomaly.top_k largest patch distances to the good-patch "
                                  "memory bank (rescaled per ring when anomaly.position_norm); heatmap output: the same "
                                  "squashing per patch; goodonly_int8.tflite uses anomaly.int8's threshold and scale and "
                                  "its own ring statistics (inside the file) instead"),
        labels=[good_label, DEFECT_LABEL], defect_labels=[DEFECT_LABEL], thresholds={DEFECT_LABEL: 0.5},
        metrics=metrics or {}, golden_inputs=encode_array(golden),
        anomaly=AnomalySpec(backbone=f"efficientnet-lite0 imagenet ({BACKBONE_FILE})", layers=list(r.layers),
                            bank_size=len(model.bank), patch_stride=grid_stride(r.layers, r.patch_stride),
                            border=r.border, sampler=r.sampler, threshold=cal.threshold, scale=cal.scale,
                            pad=r.pad, top_k=r.top_k, neighbours=r.neighbours,
                            position_norm=model.position is not None,
                            augment=r.augment,
                            false_alarm_rate=r.false_alarm_rate, calibration_images=cal.images,
                            expected_false_alarm_rate=cal.expected_false_alarm_rate,
                            false_alarm_bound=cal.false_alarm_bound))
    manifest.artifacts["onnx"] = Artifact(
        format="onnx", file=path.name, sha256=file_sha256(path), size=path.stat().st_size, precision="float32",
        golden_outputs=encode_array(backend.run(golden.astype(np.float32))), golden_tolerance=1e-4,
        parity=Parity(images=len(x), label_agreement=agree, max_abs_diff=diff))
    write_manifest(manifest, out)
    from training.goodonly_graph import backbone_file

    lic = backbone_file().with_name("LICENSE.efficientnet-lite0")
    if lic.is_file():  # the detector embeds the backbone's weights: its notice travels with it
        shutil.copyfile(lic, out / lic.name)
    fmt = ""
    try:
        if "tflite" in formats:
            fmt = "tflite"
            export_tflite(model, x, golden, manifest, out, backend)
        if "tflite_int8" in formats:
            fmt = "tflite_int8"
            rep = preprocess_batch(list(representative or calib)[:REPRESENTATIVE], spec).astype(np.float32)
            export_tflite_int8(model, x, golden, manifest, out, rep, backend)
    except Exception as e:  # TensorFlow's converter and quantiser raise their own untyped errors
        if fmt not in manifest.artifacts:  # a file written before its check failed is not part of the model
            (Path(out) / FILES[fmt]).unlink(missing_ok=True)
        if isinstance(e, ModelError):
            raise
        written = ", ".join(a.file for a in manifest.artifacts.values())
        raise ModelError(f"{out / FILES[fmt]}: TFLite export failed: {type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0][:300]} ({written} and manifest.json are written and usable; "
                         f"evaluation.json is not)",
                         hint="train again with --no-int8 (ONNX and float TFLite) or --no-tflite (ONNX only), or "
                              "check the TensorFlow installation") from None
    return path


def _tflite_args(model: GoodOnlyModel) -> dict[str, Any]:
    r = model.recipe
    return {"layers": r.layers, "image_size": r.image_size, "patch_stride": r.patch_stride, "border": r.border,
            "pad": r.pad, "top_k": r.top_k, "neighbours": r.neighbours}


def _register(manifest: Manifest, out: Path, fmt: str, path: Path, precision: str, golden: np.ndarray,
              parity: Parity, tolerance: float) -> None:
    from smartstock.runtime.backends import load_backend

    backend = load_backend(path, "tflite", threads=2)
    manifest.artifacts[fmt] = Artifact(
        format=fmt, file=path.name, sha256=file_sha256(path), size=path.stat().st_size, precision=precision,
        golden_outputs=encode_array(backend.run(golden.astype(np.float32))), golden_tolerance=tolerance,
        parity=parity)
    write_manifest(manifest, out)


def export_tflite(model: GoodOnlyModel, x: np.ndarray, golden: np.ndarray, manifest: Manifest, out: Path,
                  onnx_backend: Any) -> Path:
    """goodonly.tflite: the same detector in float32; its scores and heat maps on the held-out good images `x`
    must match the ONNX graph's within TFLITE_TOLERANCE."""
    from smartstock.runtime.backends import load_backend
    from training.goodonly_tflite import detector_tflite

    cal = model.calibration
    path = Path(out) / FILES["tflite"]
    path.write_bytes(detector_tflite(bank=model.bank, threshold=cal.threshold, scale=cal.scale,
                                     position=model.position, **_tflite_args(model)))
    ref = onnx_backend.run_outputs(x)
    got = load_backend(path, "tflite", threads=2).run_outputs(x)
    diff = {k: float(np.max(np.abs(got[k] - ref[k]))) for k in ("scores", "heatmap")}
    agree = float(np.mean((got["scores"][:, 1] >= 0.5) == (ref["scores"][:, 1] >= 0.5)))
    logger.info("%s: %d held-out images, max |diff| vs ONNX: scores %.3g, heat map %.3g; decisions agree %.2f%%",
                path.name, len(x), diff["scores"], diff["heatmap"], agree * 100)
    if max(diff.values()) > TFLITE_TOLERANCE:
        raise ModelError(f"{path}: TFLite detector disagrees with the ONNX graph (max diff scores "
                         f"{diff['scores']:.3g}, heat map {diff['heatmap']:.3g})",
                         hint="a converter problem: check the TensorFlow version")
    _register(manifest, out, "tflite", path, "float32", golden,
              Parity(images=len(x), label_agreement=agree, max_abs_diff=max(diff.values())), 1e-4)
    return path


def export_tflite_int8(model: GoodOnlyModel, x: np.ndarray, golden: np.ndarray, manifest: Manifest, out: Path,
                       rep: np.ndarray, onnx_backend: Any) -> Path:
    """goodonly_int8.tflite: int8 backbone, float tail. Its features are not the float ones, so the distances
    to the bank shift: the ring statistics and the threshold are fitted again, exactly as for the float model
    (training.goodonly.calibrate_distances), on the patch distances the int8 detector itself gives the held-out
    good images `x` on LiteRT (converted first with constants that keep its heat map well inside (0, 1), which
    is then inverted: d = C0 + S0 * logit(heat)); the fitted constants then replace those in the same flatbuffer
    (same graph, ranges and kernels), recorded in manifest anomaly.int8. Read from the detector itself because
    int8 results depend on the kernels and the conversion: XNNPACK's and LiteRT's built-in int8 kernels gave
    features up to 1.7 apart (of 20) on the same model, and a second conversion with other constants moved
    scores by 2.5e-3."""
    import tempfile

    from smartstock.runtime.backends import load_backend
    from training.goodonly import calibrate_distances, image_scores
    from training.goodonly_graph import grid_of
    from training.goodonly_tflite import detector_tflite, replace_constants, tail_constants

    r, path = model.recipe, Path(out) / FILES["tflite_int8"]
    args = _tflite_args(model)
    cal0 = model.calibration
    n_patches = grid_of(r.image_size, r.layers, r.patch_stride) ** 2
    with tempfile.TemporaryDirectory(prefix="smartstock-int8-") as tmp:
        first, staged = Path(tmp) / "first.tflite", Path(tmp) / path.name
        # First constants chosen to read distances back: z = (d - C0) / S0, S0 a power of two above the good
        # parts' 99th-percentile distance (so the heat map stays well inside (0, 1) on good parts), C0 tiny
        # distinct offsets (so the constant is found again by its bytes).
        p99 = (model.position[0] + model.position[1]).max() if model.position is not None else cal0.threshold
        s0 = float(2.0 ** np.ceil(np.log2(max(float(p99), 1.0))))
        c0 = np.linspace(0.0, 1e-3, n_patches).astype(np.float32)
        first_position = (c0, np.full(n_patches, s0, np.float32))
        data = detector_tflite(bank=model.bank, threshold=0.0, scale=1.0, position=first_position, int8_rep=rep,
                               **args)
        first_consts = tail_constants(*first_position, 0.0, 1.0)
        first.write_bytes(data)
        heat = load_backend(first, "tflite", threads=r.threads).run_outputs(x)["heatmap"].astype(np.float64)
        heat = heat.reshape(len(x), -1)
        if np.any(heat <= 0) or np.any(heat >= 1):
            raise ModelError(f"{path}: the int8 heat map saturates on held-out good images, its distances cannot be "
                             "read back", hint="export without int8 (--no-int8)")
        d = c0.astype(np.float64) + s0 * (np.log(heat) - np.log1p(-heat))
        position, cal = calibrate_distances(d, r, model.calib_groups)
        new = tail_constants(*(position or (np.zeros(n_patches), np.ones(n_patches))), cal.threshold, cal.scale)
        staged.write_bytes(replace_constants(data, list(zip(first_consts, new))))
        rescaled = d if position is None else (d - position[0]) / position[1]
        expected = _squash(image_scores(rescaled, r.border, r.top_k), cal.threshold, cal.scale)
        got_out = load_backend(staged, "tflite", threads=r.threads).run_outputs(x)
        got = got_out["scores"][:, 1]
        diff = float(np.max(np.abs(got - expected)))
        agree = float(np.mean((got >= 0.5) == (expected >= 0.5)))
        logger.info("%s: threshold %.4g (float model %.4g) from %d held-out images; max |diff| vs the scores of "
                    "its own distances %.3g, decisions agree %.2f%%", path.name, cal.threshold, cal0.threshold, len(x),
                    diff, agree * 100)
        if diff > INT8_PARITY_TOLERANCE:
            raise ModelError(f"{path}: int8 detector disagrees with the scores of its own distances (max diff "
                             f"{diff:.3g}): the distances read back from its heat map do not reproduce its scores",
                             hint="check the TensorFlow version, or export without int8 (--no-int8)")
        shutil.copyfile(staged, path)
    # The manifest's parity is against the float detector (as for every other export): decisions on the
    # held-out good images at each model's own threshold, and how well the int8 scores keep their order.
    # Decisions on good images agree almost by construction (both thresholds pass ~99% of them); the order of
    # the patch scores over every patch of every held-out image is what shows a tail that computes otherwise.
    ref_out = onnx_backend.run_outputs(x)
    ref = ref_out["scores"][:, 1].astype(np.float64)
    agree = float(np.mean((got >= 0.5) == (ref >= 0.5)))
    rank = _rank_correlation(np.ravel(got_out["heatmap"]), np.ravel(ref_out["heatmap"]))
    logger.info("%s vs the float ONNX detector on %d held-out good images: decisions agree %.2f%%, rank correlation "
                "of the patch scores %.3f", path.name, len(x), agree * 100, rank)
    if rank < INT8_RANK_WARNING:
        logger.warning("%s: int8 patch scores keep the float detector's order poorly (rank correlation %.3f < %.2f "
                       "over the held-out good images' patches): check it with `smartstock eval cnn` on parts with "
                       "defects before shipping it, or export without int8 (--no-int8)", path.name, rank,
                       INT8_RANK_WARNING)
    manifest.anomaly.int8 = AnomalyCalibration(  # type: ignore[union-attr]  (export() always sets anomaly)
        threshold=cal.threshold, scale=cal.scale, calibration_images=cal.images,
        calibration_false_alarm_rate=cal.false_alarm_rate, expected_false_alarm_rate=cal.expected_false_alarm_rate,
        false_alarm_bound=cal.false_alarm_bound)
    _register(manifest, out, "tflite_int8", path, "int8", golden,
              Parity(images=len(x), label_agreement=agree, max_abs_diff=float(np.max(np.abs(got - ref)))),
              INT8_GOLDEN_TOLERANCE)
    return path


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (1.0 for fewer than 3 values or constant scores)."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _read_all(paths: Sequence[Path]) -> tuple[list[np.ndarray], list[str], list[Path]]:
    """(images, why each unreadable one was skipped, the paths of the images read)."""
    images, skipped, kept = [], [], []
    for p in paths:
        try:
            images.append(read_image(p))
            kept.append(p)
        except InputError as e:
            skipped.append(str(e))
    return images, skipped, kept


def tflite_available() -> bool:
    from importlib.util import find_spec

    return find_spec("tensorflow") is not None


def train_and_export(data: Path, out: Path, recipe: GoodOnlyRecipe | None = None,
                     formats: Sequence[str] = FORMATS) -> dict[str, Any]:
    """Folder with only good parts -> detector in `out`; returns a summary like training.cnn_cli's.
    `formats`: ONNX always, the TFLite ones when TensorFlow is installed (a warning says when it is not)."""
    recipe = recipe or GoodOnlyRecipe()
    if set(formats) - {"onnx"} and not tflite_available():
        logger.warning("TensorFlow is not installed: writing the ONNX detector only (pip install 'smartstock[train]' "
                       "for the TFLite exports)")
        formats = ("onnx",)
    t0 = time.perf_counter()
    folder = scan_image_folder(data, min_classes=1)
    if len(folder.labels) != 1:
        raise InputError(f"{data}: good-only training takes one good-part folder, found {folder.labels}")
    if not 0 < recipe.false_alarm_rate < 0.5:
        raise InputError(f"--false-alarm-rate {recipe.false_alarm_rate} is out of range", hint="use e.g. 0.01")
    paths = [p for p, _ in folder.files]
    split = hold_out([p.name for p in paths], recipe.calibration_fraction, recipe.seed)
    if len(split.train) < 2:
        raise InputError(f"{data}: {len(paths)} good images are too few", hint="give at least 10 (better 100+)")
    for w in split.warnings:
        logger.warning("%s", w)
    calib, skipped_c, kept_c = _read_all([paths[i] for i in split.calib])
    train, skipped_t, _ = _read_all([paths[i] for i in split.train])
    feats = PatchFeatures(recipe)
    groups = [source_of(p.name) for p in kept_c] if split.by == "source" else None
    model = fit(train, calib, recipe, feats, groups)
    cal = model.calibration
    report = {"method": "good-only (patchcore)", "data": str(data), "train_images": len(train),
              "calibration_images": cal.images, "held_out_by": split.by, "sources": split.sources,
              "split_warnings": split.warnings, "threshold": cal.threshold, "scale": cal.scale,
              "calibration_false_alarm_rate": cal.false_alarm_rate, "target_false_alarm_rate": recipe.false_alarm_rate,
              "expected_false_alarm_rate": cal.expected_false_alarm_rate, "false_alarm_bound": cal.false_alarm_bound,
              "false_alarm_bound_confidence": BOUND_CONFIDENCE, "calibration_enough": cal.enough,
              "calibration_images_needed": images_needed(recipe.false_alarm_rate),
              "bank_size": len(model.bank), "timings_s": {k: round(v, 2) for k, v in model.timings.items()},
              "recipe": {k: v for k, v in asdict(recipe).items() if k != "extra"}, "skipped": skipped_c + skipped_t}
    metrics = {"method": "good-only", "train_images": len(train), "calibration_images": cal.images,
               "calibration_false_alarm_rate": cal.false_alarm_rate}
    path = export(model, feats, calib, Path(out), good_label=folder.labels[0], metrics=metrics, formats=formats,
                  representative=train)
    from smartstock.vision.manifest import load_manifest

    manifest = load_manifest(path)
    if manifest.anomaly is not None and manifest.anomaly.int8 is not None:
        report["int8"] = manifest.anomaly.int8.model_dump()
    (Path(out) / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    files = {fmt: str(Path(out) / art.file) for fmt, art in manifest.artifacts.items()}
    return {"out": str(out), "files": files, "evaluation": report,
            "seconds": round(time.perf_counter() - t0, 1), "model": model}


def _held_out_by(ev: dict[str, Any]) -> str:
    if ev["held_out_by"] == "source":
        return f"whole source pictures by file name, of {ev['sources']}"
    return "single images"


def run(args: Any) -> int:
    """`smartstock train cnn --data D --out O` when D holds only good parts (dispatched by training.cnn_cli)."""
    recipe = GoodOnlyRecipe(seed=args.seed)
    if getattr(args, "image_size", None):
        recipe.image_size = args.image_size
    if getattr(args, "false_alarm_rate", None) is not None:
        recipe.false_alarm_rate = args.false_alarm_rate
    for name, field in (("border", "border"), ("bank_size", "bank_size"), ("top_k", "top_k"), ("mirror_pad", "pad"),
                        ("neighbours", "neighbours")):
        if getattr(args, name, None) is not None:
            setattr(recipe, field, getattr(args, name))
    if getattr(args, "no_position_norm", False):
        recipe.position_norm = False
    if getattr(args, "orientations", False):
        recipe.augment = "d4"
    if recipe.bank_size < 1 or recipe.top_k < 1 or not 1 <= recipe.neighbours <= 64:
        raise InputError(f"--bank-size {recipe.bank_size} / --top-k {recipe.top_k} must be at least 1, --neighbours "
                         f"{recipe.neighbours} 1..64", hint="use e.g. --bank-size 3000 --top-k 3 --neighbours 3")
    if getattr(args, "epochs", None) is not None:
        logger.info("--epochs is ignored: a good-only detector is built, not trained by epochs")
    from training.goodonly_graph import check_layers, grid_of

    check_layers(recipe.image_size, recipe.layers, recipe.patch_stride, recipe.border, recipe.pad)
    scored = (grid_of(recipe.image_size, recipe.layers, recipe.patch_stride) - 2 * recipe.border) ** 2
    if recipe.top_k > scored:
        raise InputError(f"--top-k {recipe.top_k} is more than the {scored} patches scored per part", hint="use e.g. 3")
    formats = ("onnx",) if getattr(args, "no_tflite", False) else FORMATS
    if getattr(args, "no_int8", False):
        formats = tuple(f for f in formats if f != "tflite_int8")
    result = train_and_export(args.data, args.out, recipe, formats)
    ev = result["evaluation"]
    print(f"good-parts-only detector from {ev['train_images']} good images (no defect images needed): memory bank "
          f"of {ev['bank_size']} patches ({recipe.sampler}, {'+'.join(recipe.layers)}, {recipe.image_size} px, "
          f"mirror pad {recipe.pad}, score = mean of top {recipe.top_k} "
          f"{'distances rescaled per ring' if recipe.position_norm else 'distances'}, a patch's distance being the mean "
          f"to its {recipe.neighbours} nearest bank patch{'es' if recipe.neighbours > 1 else ''})")
    print(f"threshold {ev['threshold']:.4g} (raw score) for {recipe.false_alarm_rate:.2%} false alarms, from "
          f"{ev['calibration_images']} held-out good images ({_held_out_by(ev)}) scored with ring statistics of the "
          f"others: expect "
          f"{ev['expected_false_alarm_rate']:.2%} of unseen good parts flagged (up to {ev['false_alarm_bound']:.2%} "
          f"with {ev['false_alarm_bound_confidence']:.0%} confidence)")
    for w in ev["split_warnings"]:
        print(f"warning: {w}")
    if not ev["calibration_enough"]:
        need = ev["calibration_images_needed"]
        print(f"warning: too few good images for a {recipe.false_alarm_rate:.2%} false-alarm rate: the threshold "
              f"rests on {ev['calibration_images']} held-out good images and needs at least {need} (about "
              f"{int(np.ceil(need / recipe.calibration_fraction))} good images in --data, "
              f"{recipe.calibration_fraction:.0%} held out), or a higher --false-alarm-rate")
    if "int8" in ev:
        i8 = ev["int8"]
        print(f"int8 TFLite: its own threshold {i8['threshold']:.4g} (raw score of its int8 features) from the same "
              f"{i8['calibration_images']} held-out good images: expect {i8['expected_false_alarm_rate']:.2%} of "
              f"unseen good parts flagged")
    written = ", ".join(Path(f).name for f in result["files"].values())
    print(f"wrote {written}, manifest.json, evaluation.json to {result['out']} in {result['seconds']:.0f} s; "
          f"check it on a folder with ok/ and defect images: smartstock eval cnn --model {result['files']['onnx']} "
          f"--data FOLDER")
    return 0
