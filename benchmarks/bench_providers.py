"""Inference per execution provider, model size and batch size, in one run (issue 16).

For every provider the installed onnxruntime offers (CPU always; CUDA, TensorRT FP32 and FP16 where
`onnxruntime-gpu` / `tensorrt` are installed), two models (the shipped defect model, 96x96 gray, and
a heavier 4-conv CNN at 224x224 built here with `onnx`), batch 1, 8 and 32: per-call latency p50/p99,
per-frame time and frames/s. Plus what preprocessing costs per frame for each model's input, so it
can be compared with the model (if it is the bottleneck on a GPU, move resize/normalise into the model).

Run on a GPU box as one prepared script: `pip install onnxruntime-gpu tensorrt-cu12` into the venv,
then `python -m benchmarks providers`. On this CPU-only machine only the CPU rows appear.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BATCHES = (1, 8, 32)
MIN_TIME_S = 1.0


def _providers() -> list[tuple[str, tuple[str, ...], bool]]:
    """(label, providers asked for, trt_fp16) for what this onnxruntime offers."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    out = [("cpu", ("cpu",), False)]
    if "CUDAExecutionProvider" in have:
        out.append(("cuda", ("cuda",), False))
    if "TensorrtExecutionProvider" in have:
        out += [("tensorrt fp32", ("tensorrt",), False), ("tensorrt fp16", ("tensorrt",), True)]
    return out


def _latencies(fn, min_time_s: float = MIN_TIME_S, warmup: int = 5) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out, start = [], time.perf_counter()
    while time.perf_counter() - start < min_time_s or len(out) < 20:
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return np.array(out) * 1000.0


def main() -> dict[str, Any]:
    from benchmarks._common import machine
    from benchmarks.bench_edge import _build_heavier_onnx
    from smartstock.runtime.backends import load_backend
    from smartstock.vision.classifier import default_model_path
    from smartstock.vision.manifest import load_manifest
    from smartstock.vision.preprocess import preprocess_batch

    shipped = default_model_path()
    spec = load_manifest(shipped).input
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        heavy = _build_heavier_onnx(Path(tmp) / "heavier224.onnx", 224, 2)
        models = {"shipped 96x96": (shipped, spec),
                  "heavier 224x224": (heavy, spec.model_copy(update={"shape": [None, 224, 224, 1]}))}
        for mname, (path, mspec) in models.items():
            frames = [rng.integers(0, 255, (480, 640, 3), np.uint8) for _ in range(32)]
            pre = _latencies(lambda: preprocess_batch(frames, mspec)) / len(frames)
            print(f"{mname}: preprocessing a 640x480 BGR frame {np.median(pre):.3f} ms")
            rows.append({"model": mname, "provider": "preprocess (CPU)", "batch": 32,
                         "ms_per_frame_p50": float(np.median(pre))})
            h, w = mspec.shape[1], mspec.shape[2]
            for label, providers, fp16 in _providers():
                backend = load_backend(path, "onnx", threads=2, warmup=3, providers=providers, trt_fp16=fp16,
                                       trt_cache_root=Path(tmp) / "trt", model_sha256="bench" + label.replace(" ", ""))
                for n in BATCHES:
                    x = rng.uniform(0, 255, (n, h, w, 1)).astype(np.float32)
                    lat = _latencies(lambda: backend.run(x))
                    row = {"model": mname, "provider": label, "serving": backend.provider, "batch": n,
                           "ms_per_call_p50": float(np.median(lat)), "ms_per_call_p99": float(np.percentile(lat, 99)),
                           "ms_per_frame_p50": float(np.median(lat)) / n, "frames_per_s": n / (float(np.median(lat)) / 1000)}
                    rows.append(row)
                    print(f"{mname:16s} {label:14s} batch {n:2d}: p50 {row['ms_per_call_p50']:.3f} ms, "
                          f"p99 {row['ms_per_call_p99']:.3f} ms, {row['frames_per_s']:.0f} frames/s")
    return {"machine": machine(), "rows": rows}
