"""Good-parts-only detection on real PCB patches: ROC AUC, defect recall at 1% false alarms, recall and
false alarms on unseen good parts (test and validation) at the calibrated threshold, latency.

Trains on good patches only (`../shared/data/pcb_patches/ok`), never on a defect image, and scores
held-out good and defective patches through the exported ONNX detector on the device path
(DefectClassifier.load -> classify_batch). The split is by source image: 30% of the source images
give the test patches, another 20% the validation patches the default was chosen on, the rest the
good patches to build and calibrate from; so no test patch, and no clean twin of a test defect,
comes from an image whose patches were used. Named recipes run side by side in one run: the
default, the previous default and the steps between them.

    python -m benchmarks goodonly                       # generated surfaces, then pcb_patches if present
    SMARTSTOCK_BENCH_GOODONLY="train=300,calib=100,test=300" SMARTSTOCK_BENCH_GOODONLY_DATA=pcb \
        SMARTSTOCK_BENCH_GOODONLY_CONFIGS=default,previous python -m benchmarks goodonly
    SMARTSTOCK_BENCH_GOODONLY="folder=1499,test=300" ...   # all 1,499 build patches, split as train cnn does

SMARTSTOCK_BENCH_GOODONLY_FORMATS=onnx,tflite,tflite_int8 scores each export of every recipe (one row per
format; the int8 row at its own recalibrated threshold). Default: onnx only.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import shared_data, time_per_call

#: name -> GoodOnlyRecipe fields; "default" is the recipe's default, "previous" the one before issue 14's
#: tuning (block2+block4, 160 px, stride 8, 3,000-patch coreset, largest patch distance); "... 1 neighbour" the
#: default before the k-nearest-neighbour distance (nearest bank patch alone).
PREVIOUS = {"image_size": 160, "pad": 0, "top_k": 1, "position_norm": False, "augment": "none", "neighbours": 1}
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "default + coreset seed 1": {"seed": 1},
    "default + coreset seed 2": {"seed": 2},
    "default + coreset seed 3": {"seed": 3},
    "previous": PREVIOUS,
    "previous + random bank": {**PREVIOUS, "sampler": "random"},
    "previous + top-3 mean": {**PREVIOUS, "top_k": 3},
    "previous + mirror pad 16": {**PREVIOUS, "pad": 16},
    "default + mirror pad 16": {"pad": 16},
    "default at 160 px": {"image_size": 160},
    "default + d4 bank": {"augment": "d4"},
    "default + bank 10000": {"bank_size": 10_000},
    "default + 1 neighbour": {"neighbours": 1},
    "default + 5 neighbours": {"neighbours": 5},
    "default + 1 neighbour + coreset seed 1": {"neighbours": 1, "seed": 1},
    "default + 1 neighbour + coreset seed 2": {"neighbours": 1, "seed": 2},
    "default + 1 neighbour + coreset seed 3": {"neighbours": 1, "seed": 3},
}
SURFACE_ROWS = ("default", "previous", "previous + random bank")
PCB_ROWS = ("default", "default + coreset seed 1", "default + coreset seed 2", "default + coreset seed 3",
            "default + 1 neighbour", "previous", "default at 160 px")


def _sizes() -> dict[str, int]:
    """train / calib: good patches to build and calibrate from; folder=N instead: the first N pool patches,
    split into bank and held-out images as `train cnn` splits a folder (by source picture)."""
    sizes = {"train": 300, "calib": 100, "test": 300, "folder": 0}
    for part in filter(None, os.environ.get("SMARTSTOCK_BENCH_GOODONLY", "").split(",")):
        k, v = part.split("=")
        sizes[k.strip()] = int(v)
    return sizes


def split_by_image(root: Path, sizes: dict[str, int], seed: int = 0) -> dict[str, list[Path]]:
    """test ok / defect from 30% of the source images, validation ok / defect from another 20%, train /
    calib good patches from the other 50% (the test patches are those of the earlier 70/30 split)."""
    ok, defect = sorted((root / "ok").glob("*.png")), sorted((root / "defect").glob("*.png"))
    ids = sorted({p.name[:8] for p in ok})
    rng = np.random.default_rng(seed)
    rng.shuffle(ids)
    test_ids, val_ids = set(ids[: int(len(ids) * 0.3)]), set(ids[int(len(ids) * 0.3): int(len(ids) * 0.5)])
    pool = [p for p in ok if p.name[:8] not in test_ids]
    rng.shuffle(pool)
    t_ok = [p for p in ok if p.name[:8] in test_ids]
    t_de = [p for p in defect if p.name[:8] in test_ids]
    rng.shuffle(t_ok)
    rng.shuffle(t_de)
    pool = [p for p in pool if p.name[:8] not in val_ids]
    v_rng = np.random.default_rng(seed + 1)
    v_ok = [p for p in ok if p.name[:8] in val_ids]
    v_de = [p for p in defect if p.name[:8] in val_ids]
    v_rng.shuffle(v_ok)
    v_rng.shuffle(v_de)
    n_tr, n_cal, n_te = sizes["train"], sizes["calib"], sizes["test"]
    if sizes.get("folder"):  # the first `folder` pool patches split as `train cnn` splits a folder (by source)
        from training.goodonly import GoodOnlyRecipe
        from training.goodonly_split import hold_out

        folder = pool[:sizes["folder"]]
        held = hold_out([p.name for p in folder], GoodOnlyRecipe().calibration_fraction)
        train, calib = [folder[i] for i in held.train], [folder[i] for i in held.calib]
    else:
        train, calib = pool[:n_tr], pool[n_tr:n_tr + n_cal]
    return {"train": train, "calib": calib, "val_ok": v_ok[:n_te], "val_defect": v_de[:n_te],
            "test_ok": t_ok[:n_te], "test_defect": t_de[:n_te]}


def _auc(clf, ok: list[np.ndarray], defect: list[np.ndarray]) -> tuple[float, np.ndarray, np.ndarray]:
    from smartstock.vision.metrics import auc, roc_curve

    s_ok = np.concatenate([clf.scores_batch(ok[i:i + 16])[:, 1] for i in range(0, len(ok), 16)])
    s_de = np.concatenate([clf.scores_batch(defect[i:i + 16])[:, 1] for i in range(0, len(defect), 16)])
    fpr, tpr, _ = roc_curve(np.r_[np.zeros(len(s_ok)), np.ones(len(s_de))].astype(bool), np.r_[s_ok, s_de])
    return float(auc(fpr, tpr)), s_ok, s_de


def score_detector(model: Path, imgs: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    """Through the device path: test ROC AUC (and validation AUC when the set has one), recall at 1% false
    alarms, recall / false alarms at the calibrated threshold, classify() latency per part (1 thread,
    batch 1, incl. preprocessing)."""
    from smartstock.vision.classifier import DefectClassifier

    clf = DefectClassifier.load(model, threads=1)
    val = {}
    if "val_ok" in imgs:  # its good parts are unseen too: a second sample of the calibrated false-alarm rate
        v_auc, v_ok, _ = _auc(clf, imgs["val_ok"], imgs["val_defect"])
        val = {"val_roc_auc": round(v_auc, 4),
               "val_false_alarms_at_calibrated_threshold": round(float(np.mean(v_ok >= 0.5)), 4)}
    test_auc, s_ok, s_de = _auc(clf, imgs["test_ok"], imgs["test_defect"])
    t1 = np.quantile(s_ok, 0.99, method="higher")
    lat = time_per_call(lambda: clf.classify(imgs["test_ok"][0]), min_time_s=1.5)
    return {**val, "roc_auc": round(test_auc, 4), "recall_at_1pct_false_alarms": round(float(np.mean(s_de > t1)), 4),
            "recall_at_calibrated_threshold": round(float(np.mean(s_de >= 0.5)), 4),
            "false_alarms_at_calibrated_threshold": round(float(np.mean(s_ok >= 0.5)), 4),
            "ms_per_part": round(lat["mean_ms"], 2), "p99_ms": round(lat["p99_ms"], 2),
            "model_mb": round(model.stat().st_size / 1e6, 2)}


def surfaces(tmp: Path) -> dict[str, list[np.ndarray]]:
    """A small generated set (training.synth): 120 + 40 good surfaces to build from, then 100 good and 100
    defective ones (scratch, crack, hole, stain, inclusion) drawn with other seeds to test on."""
    from smartstock.vision.images import read_image
    from training.synth import generate

    generate(tmp / "build", 160, seed=21, size=128, classes="binary", ok_fraction=1.0)
    generate(tmp / "test", 200, seed=22, size=128, classes="binary", ok_fraction=0.5)
    build = [read_image(p) for p in sorted((tmp / "build" / "ok").iterdir())]
    return {"train": build[:120], "calib": build[120:],
            "test_ok": [read_image(p) for p in sorted((tmp / "test" / "ok").iterdir())],
            "test_defect": [read_image(p) for p in sorted((tmp / "test" / "defect").iterdir())]}


def _formats() -> tuple[str, ...]:
    from training.goodonly_export import FILES

    env = os.environ.get("SMARTSTOCK_BENCH_GOODONLY_FORMATS", "onnx")
    picked = tuple(f.strip() for f in env.split(",") if f.strip())
    unknown = sorted(set(picked) - set(FILES))
    if unknown:
        raise ValueError(f"SMARTSTOCK_BENCH_GOODONLY_FORMATS: unknown {unknown}; known: {', '.join(FILES)}")
    return picked


def run_configs(name: str, imgs: dict[str, list[np.ndarray]], names, tmp: Path) -> list[dict[str, Any]]:
    from dataclasses import asdict

    from training.goodonly import GoodOnlyRecipe, PatchFeatures, fit
    from training.goodonly_export import FILES, export

    print(f"{name}: train {len(imgs['train'])} good, calibrate on {len(imgs['calib'])} good, "
          + (f"validate on {len(imgs['val_ok'])} good + {len(imgs['val_defect'])} defect, " if "val_ok" in imgs else "")
          + f"test {len(imgs['test_ok'])} good + {len(imgs['test_defect'])} defect", flush=True)
    print(f"{'recipe':24s} {'val AUC':>7s} {'AUC':>7s} {'rec@1%FA':>9s} {'rec@thr':>8s} {'FA@thr':>7s} {'vFA@thr':>7s} "
          f"{'FA exp':>6s} {'FA 90%':>6s} "
          f"{'ms/part':>8s} {'fit s':>6s}")
    rows = []
    for i, cname in enumerate(names):
        recipe = GoodOnlyRecipe(**CONFIGS[cname], model_id=f"bench-goodonly-{i}")
        t0 = time.perf_counter()
        feats = PatchFeatures(recipe)
        model = fit(imgs["train"], imgs["calib"], recipe, feats)
        formats = _formats()
        path = export(model, feats, imgs["calib"], tmp / f"{name.split()[0]}-{i}", formats=formats,
                      representative=imgs["train"])
        fit_s = time.perf_counter() - t0
        keep = ("layers", "image_size", "patch_stride", "sampler", "bank_size", "border", "pad", "top_k",
                "neighbours", "position_norm", "augment")
        cal = model.calibration
        from smartstock.vision.manifest import load_manifest

        manifest = load_manifest(path)
        for fmt in formats:
            images, expected, bound = cal.images, cal.expected_false_alarm_rate, cal.false_alarm_bound
            threshold = cal.threshold
            if fmt == "tflite_int8":  # scored at its own ring statistics and threshold (manifest anomaly.int8)
                own = manifest.anomaly.int8  # type: ignore[union-attr]
                images, expected, bound = own.calibration_images, own.expected_false_alarm_rate, own.false_alarm_bound
                threshold = own.threshold
            parity = manifest.artifacts[fmt].parity
            label = cname if fmt == "onnx" else f"{cname} [{fmt}]"
            r = {"data": name, "recipe": label, "format": fmt, **{k: v for k, v in asdict(recipe).items() if k in keep},
                 **score_detector(path.with_name(FILES[fmt]), imgs), "calibration_images": images,
                 "expected_false_alarm_rate": round(expected, 4), "false_alarm_bound_90": round(bound, 4),
                 "threshold": round(threshold, 4),
                 "export_parity": parity.model_dump() if parity is not None else None,  # vs ONNX / numpy at export
                 "fit_s": round(fit_s, 1)}
            rows.append(r)
            _print_row(label, r, fit_s)
    return rows


def _print_row(cname: str, r: dict[str, Any], fit_s: float) -> None:
    print(f"{cname:24s} {r.get('val_roc_auc', float('nan')):7.4f} {r['roc_auc']:7.4f} "
          f"{r['recall_at_1pct_false_alarms']:9.3f} {r['recall_at_calibrated_threshold']:8.3f} "
          f"{r['false_alarms_at_calibrated_threshold']:7.3f} "
          f"{r.get('val_false_alarms_at_calibrated_threshold', float('nan')):7.3f} "
          f"{r['expected_false_alarm_rate']:6.3f} "
          f"{r['false_alarm_bound_90']:6.3f} {r['ms_per_part']:8.2f} {fit_s:6.0f}", flush=True)


def main() -> dict[str, Any] | None:
    from smartstock.vision.images import read_image

    only = os.environ.get("SMARTSTOCK_BENCH_GOODONLY_DATA", "surfaces,pcb")
    rows: list[dict[str, Any]] = []
    sizes = _sizes()
    with tempfile.TemporaryDirectory(prefix="bench-goodonly-") as tmp:
        pick = os.environ.get("SMARTSTOCK_BENCH_GOODONLY_CONFIGS")  # e.g. "default,previous": names of CONFIGS
        names = [n.strip() for n in pick.split(",")] if pick else None
        unknown = sorted(set(names or ()) - set(CONFIGS))
        if unknown:
            raise ValueError(f"SMARTSTOCK_BENCH_GOODONLY_CONFIGS: unknown {unknown}; known: {', '.join(CONFIGS)}")
        if "surfaces" in only:
            rows += run_configs("surfaces (generated)", surfaces(Path(tmp)), names or SURFACE_ROWS, Path(tmp))
        root = shared_data("pcb_patches") if "pcb" in only else None
        if root is not None:
            split = split_by_image(root, sizes)
            imgs = {k: [read_image(p) for p in v] for k, v in split.items()}
            rows += run_configs("pcb_patches (split by source image)", imgs, names or PCB_ROWS, Path(tmp))
    return {"sizes": sizes, "rows": rows,
            "note": "no defect image used in training or calibration; CPU shared: latency is noisy"}


if __name__ == "__main__":
    main()
