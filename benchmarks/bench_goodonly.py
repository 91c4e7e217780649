"""Good-parts-only detection on real PCB patches: ROC AUC, defect recall at 1% false alarms, latency.

Trains on good patches only (`../shared/data/pcb_patches/ok`), never on a defect image, and scores
held-out good and defective patches through the exported ONNX detector on the device path
(DefectClassifier.load -> classify_batch). The split is by source image: no test patch, and no clean
twin of a test defect, comes from an image whose patches were used for training or calibration.
Several feature choices and both memory-bank samplers run side by side in one run.

    python -m benchmarks goodonly                       # generated surfaces, then pcb_patches if present
    SMARTSTOCK_BENCH_GOODONLY="train=300,calib=100,test=300" SMARTSTOCK_BENCH_GOODONLY_DATA=pcb \
        python -m benchmarks goodonly
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import shared_data, time_per_call

#: (layers, image size, patch stride, sampler, bank size), the first is the recipe's default.
CONFIGS: list[tuple[tuple[str, ...], int, int, str, int]] = [
    (("block2", "block4"), 160, 8, "coreset", 3000),
    (("block2", "block4"), 160, 8, "random", 3000),
    (("block2", "block4"), 160, 4, "coreset", 3000),
    (("block2", "block4"), 224, 4, "coreset", 3000),
    (("block4", "block10"), 224, 8, "coreset", 3000),
    (("block2", "block4"), 96, 4, "coreset", 3000),
]
#: Extra pcb rows: the default with its outer patch ring(s) left out of the score (GoodOnlyRecipe.border).
BORDER_ROWS = (1, 2)


def _sizes() -> dict[str, int]:
    sizes = {"train": 300, "calib": 100, "test": 300}
    for part in filter(None, os.environ.get("SMARTSTOCK_BENCH_GOODONLY", "").split(",")):
        k, v = part.split("=")
        sizes[k.strip()] = int(v)
    return sizes


def split_by_image(root: Path, sizes: dict[str, int], seed: int = 0) -> dict[str, list[Path]]:
    """train / calib good patches from 70% of the source images; test ok / defect from the other 30%."""
    ok, defect = sorted((root / "ok").glob("*.png")), sorted((root / "defect").glob("*.png"))
    ids = sorted({p.name[:8] for p in ok})
    rng = np.random.default_rng(seed)
    rng.shuffle(ids)
    test_ids = set(ids[: int(len(ids) * 0.3)])
    pool = [p for p in ok if p.name[:8] not in test_ids]
    rng.shuffle(pool)
    t_ok = [p for p in ok if p.name[:8] in test_ids]
    t_de = [p for p in defect if p.name[:8] in test_ids]
    rng.shuffle(t_ok)
    rng.shuffle(t_de)
    n_tr, n_cal, n_te = sizes["train"], sizes["calib"], sizes["test"]
    return {"train": pool[:n_tr], "calib": pool[n_tr:n_tr + n_cal], "test_ok": t_ok[:n_te], "test_defect": t_de[:n_te]}


def score_detector(model: Path, ok: list[np.ndarray], defect: list[np.ndarray]) -> dict[str, Any]:
    """Through the device path: ROC AUC, recall at 1% false alarms, recall / false alarms at the
    calibrated threshold, and classify() latency per part (1 thread, batch 1, incl. preprocessing)."""
    from smartstock.vision.classifier import DefectClassifier
    from smartstock.vision.metrics import auc, roc_curve

    clf = DefectClassifier.load(model, threads=1)
    s_ok = np.concatenate([clf.scores_batch(ok[i:i + 16])[:, 1] for i in range(0, len(ok), 16)])
    s_de = np.concatenate([clf.scores_batch(defect[i:i + 16])[:, 1] for i in range(0, len(defect), 16)])
    fpr, tpr, _ = roc_curve(np.r_[np.zeros(len(s_ok)), np.ones(len(s_de))].astype(bool), np.r_[s_ok, s_de])
    t1 = np.quantile(s_ok, 0.99, method="higher")
    lat = time_per_call(lambda: clf.classify(ok[0]), min_time_s=1.5)
    return {"roc_auc": round(auc(fpr, tpr), 4), "recall_at_1pct_false_alarms": round(float(np.mean(s_de > t1)), 4),
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


def run_configs(name: str, imgs: dict[str, list[np.ndarray]], configs, tmp: Path) -> list[dict[str, Any]]:
    from training.goodonly import GoodOnlyRecipe, PatchFeatures, fit
    from training.goodonly_export import export

    print(f"{name}: train {len(imgs['train'])} good, calibrate on {len(imgs['calib'])} good, test "
          f"{len(imgs['test_ok'])} good + {len(imgs['test_defect'])} defect", flush=True)
    print(f"{'layers':16s} {'px':>4s} {'grid':>4s} {'sampler':8s} {'bank':>6s} {'AUC':>7s} {'rec@1%FA':>9s} {'rec@thr':>8s} "
          f"{'FA@thr':>7s} {'ms/part':>8s} {'fit s':>6s}")
    rows = []
    for i, (layers, size, stride, sampler, bank, *rest) in enumerate(configs):
        border = rest[0] if rest else 0
        recipe = GoodOnlyRecipe(image_size=size, layers=layers, sampler=sampler, bank_size=bank, patch_stride=stride,
                                border=border, model_id=f"bench-goodonly-{i}")
        t0 = time.perf_counter()
        feats = PatchFeatures(recipe)
        model = fit(imgs["train"], imgs["calib"], recipe, feats)
        path = export(model, feats, imgs["calib"], tmp / f"{name.split()[0]}-{i}")
        fit_s = time.perf_counter() - t0
        r = {"data": name, "layers": "+".join(layers), "image_size": size, "patch_stride": stride, "sampler": sampler,
             "bank_size": bank, "border": border,
             **score_detector(path, imgs["test_ok"], imgs["test_defect"]), "fit_s": round(fit_s, 1)}
        rows.append(r)
        print(f"{r['layers'] + (f' border {border}' if border else ''):16s} {size:4d} {stride:4d} {sampler:8s} {bank:6d} {r['roc_auc']:7.4f} "
              f"{r['recall_at_1pct_false_alarms']:9.3f} {r['recall_at_calibrated_threshold']:8.3f} "
              f"{r['false_alarms_at_calibrated_threshold']:7.3f} {r['ms_per_part']:8.2f} {fit_s:6.0f}", flush=True)
    return rows


def main() -> dict[str, Any] | None:
    from smartstock.vision.images import read_image

    only = os.environ.get("SMARTSTOCK_BENCH_GOODONLY_DATA", "surfaces,pcb")
    rows: list[dict[str, Any]] = []
    sizes = _sizes()
    with tempfile.TemporaryDirectory(prefix="bench-goodonly-") as tmp:
        if "surfaces" in only:
            rows += run_configs("surfaces (generated)", surfaces(Path(tmp)), CONFIGS[:3], Path(tmp))
        root = shared_data("pcb_patches") if "pcb" in only else None
        if root is not None:
            split = split_by_image(root, sizes)
            imgs = {k: [read_image(p) for p in v] for k, v in split.items()}
            pick = os.environ.get("SMARTSTOCK_BENCH_GOODONLY_CONFIGS")  # e.g. "0,2": rows of CONFIGS
            configs = ([CONFIGS[int(i)] for i in pick.split(",")] if pick else
                       CONFIGS + [(*CONFIGS[0], b) for b in BORDER_ROWS])
            rows += run_configs("pcb_patches (split by source image)", imgs, configs, Path(tmp))
    return {"sizes": sizes, "rows": rows,
            "note": "no defect image used in training or calibration; CPU shared: latency is noisy"}


if __name__ == "__main__":
    main()
