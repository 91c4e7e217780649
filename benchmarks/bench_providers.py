"""Inference per execution provider, model size and batch size, in one run (issue 16).

For every provider the installed onnxruntime offers (CPU always; CUDA, TensorRT FP32 and FP16 where
`onnxruntime-gpu` / `tensorrt` are installed), two models (the shipped defect model, 96x96 gray, and
a heavier 4-conv CNN at 224x224 built here with `onnx`), batch 1, 8 and 32: per-call latency p50/p99,
per-frame time and frames/s, with and without an IO binding (`vision.io_binding`: outputs into
preallocated buffers) side by side. Plus where preprocessing a 640x480 BGR frame spends its time for
each model's input (decode for context, colour conversion into a new array and into the reused
buffer, INTER_AREA / INTER_LINEAR resize, the float copy into the batch, letterbox) and the whole of
`preprocess_batch` before (fresh arrays) and after (reused colour buffer), bit-identical, so it can
be compared with the model. Normalisation is inside the exported model (training/cnn.py, manifest
`normalisation.inside_model`): preprocessing hands over 0..255 and never normalises a second time.

Run on a GPU box as one prepared script: `benchmarks/gpu.sh` (its own venv with onnxruntime-gpu and
tensorrt-cu12, then `python -m benchmarks providers edge`). On a CPU-only machine only the CPU rows
appear, and "gpu" in the JSON is null.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BATCHES = (1, 8, 32)


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


def _preprocess_steps(frames: list[np.ndarray], spec: Any) -> dict[str, float]:
    """ms per frame of each preprocessing step and of the whole, before and after, for one input spec."""
    import cv2

    from smartstock.vision.preprocess import _colour, _letterbox, _resize, _scratch, preprocess_batch

    size = (spec.width, spec.height)
    n = len(frames)
    gray = spec.color == "gray"
    code = cv2.COLOR_BGR2GRAY if gray else cv2.COLOR_BGR2RGB
    conv = [cv2.cvtColor(f, code) for f in frames]
    small = [cv2.resize(c, size, interpolation=cv2.INTER_AREA) for c in conv]
    out = np.empty((n, *spec.sample_shape()), np.float32)
    png = cv2.imencode(".png", frames[0])[1]
    jpg = cv2.imencode(".jpg", frames[0], [cv2.IMWRITE_JPEG_QUALITY, 90])[1]

    def before() -> np.ndarray:  # the path of large frames until this change: every conversion a new array
        res = np.empty((n, *spec.sample_shape()), np.float32)
        for i, f in enumerate(frames):
            img = _resize(_colour(f, cv2, gray, spec.color == "rgb"), size, spec.resize == "area", cv2)
            res[i] = img[:, :, None] if img.ndim == 2 else img
        return res

    def cast() -> None:
        for i, img in enumerate(small):
            out[i] = img[:, :, None] if img.ndim == 2 else img

    after = preprocess_batch(frames, spec)
    if not np.array_equal(before(), after):
        raise AssertionError("preprocess_batch is no longer bit-identical to the plain path")
    steps = {
        "decode png (per frame, context)": lambda: [cv2.imdecode(png, cv2.IMREAD_COLOR) for _ in range(n)],
        "decode jpeg q90 (per frame, context)": lambda: [cv2.imdecode(jpg, cv2.IMREAD_COLOR) for _ in range(n)],
        "colour into a new array": lambda: [cv2.cvtColor(f, code) for f in frames],
        "colour into the reused buffer": lambda: [cv2.cvtColor(f, code, dst=_scratch(c.shape))
                                                  for f, c in zip(frames, conv)],
        "resize INTER_AREA (uint8)": lambda: [cv2.resize(c, size, interpolation=cv2.INTER_AREA) for c in conv],
        "resize INTER_LINEAR (uint8, not used: aliases)": lambda: [cv2.resize(c, size, interpolation=cv2.INTER_LINEAR)
                                                                   for c in conv],
        "float copy into the batch": cast,
        "letterbox instead of stretch": lambda: [_letterbox(c, size, True, cv2) for c in conv],
        "preprocess_batch before (new arrays)": before,
        "preprocess_batch after (reused colour buffer)": lambda: preprocess_batch(frames, spec),
    }
    return {name: float(np.median(lat)) / n for name, lat in _interleaved(steps).items()}


def _interleaved(fns: dict[str, Any], rounds: int = 8, burst_s: float = 0.15) -> dict[str, np.ndarray]:
    """Latencies (ms) of several functions measured in alternating short bursts, so a busy shared
    machine slows all of them alike and their ratios stay meaningful."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            while time.perf_counter() - start < burst_s:
                t = time.perf_counter()
                fn()
                out[name].append(time.perf_counter() - t)
    return {k: np.array(v) * 1000.0 for k, v in out.items()}


def _loop_where_preprocessing_runs(model: Path, rounds: int = 3, parts: int = 960) -> dict[str, Any]:
    """The edge loop with one inference worker on 640x480 frames, preprocessing in the inference worker
    (before) or in each camera's capture thread (after, the default), with 1 and 2 cameras; rounds
    interleaved, parts/s per run and the median."""
    import cv2

    from benchmarks.bench_edge import MemorySource, _frames
    from edge.loop import Camera, InspectionLoop, LoopSettings
    from smartstock.store import open_store
    from smartstock.vision.classifier import DefectClassifier

    clf = DefectClassifier.load(model, threads=1, providers=("cpu",))
    images = [cv2.resize(f, (640, 480), interpolation=cv2.INTER_LINEAR) for f in _frames(32)[0]]
    runs: dict[str, list[float]] = {}
    for _ in range(rounds):
        for n_cams in (1, 2):
            for where in ("worker", "capture"):
                cams = [Camera(f"cam{k}", MemorySource(images, parts // n_cams), f"B-{k}") for k in range(n_cams)]
                with tempfile.TemporaryDirectory() as d:
                    store = open_store(d)
                    loop = InspectionLoop(None, clf, store, LoopSettings(
                        sku="B", device_id="bench", events_topic="b/e", queue_size=64, batch_max=8, workers=1,
                        prepare_in_capture=where == "capture"), cameras=cams)
                    t0 = time.perf_counter()
                    loop.start()
                    loop.done.wait()
                    dt = time.perf_counter() - t0
                    loop.stop()
                    store.close()
                done = sum(c.counters["parts_inspected"] for c in cams)
                runs.setdefault(f"{n_cams} camera(s), preprocessing in the {where}", []).append(done / dt)
    out = {k: {"parts_per_s": [round(v, 1) for v in vs], "median": float(np.median(vs))} for k, vs in runs.items()}
    for n_cams in (1, 2):
        w, c = (out[f"{n_cams} camera(s), preprocessing in the {x}"]["median"] for x in ("worker", "capture"))
        out[f"{n_cams} camera(s): capture / worker"] = {"ratio": c / w}
    return out


def _gpu() -> str | None:
    """The GPU's name, driver and memory (nvidia-smi), None on a machine without one."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return None
    got = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30)
    return got.stdout.strip() or None if got.returncode == 0 else None


def main() -> dict[str, Any]:
    from benchmarks._common import machine
    from benchmarks.bench_edge import _build_heavier_onnx
    from smartstock.runtime.backends import load_backend
    from smartstock.vision.classifier import default_model_path
    from smartstock.vision.manifest import load_manifest

    shipped = default_model_path()
    spec = load_manifest(shipped).input
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    preprocessing: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        heavy = _build_heavier_onnx(Path(tmp) / "heavier224.onnx", 224, 2)
        models = {"shipped 96x96": (shipped, spec),
                  "heavier 224x224": (heavy, spec.model_copy(update={"shape": [None, 224, 224, 1]}))}
        for mname, (path, mspec) in models.items():
            frames = [rng.integers(0, 255, (480, 640, 3), np.uint8) for _ in range(32)]
            steps = preprocessing[mname] = _preprocess_steps(frames, mspec)
            print(f"{mname}: preprocessing a 640x480 BGR frame, ms per frame:")
            for step, ms in steps.items():
                print(f"  {step:48s} {ms:.3f}")
            before, after = steps["preprocess_batch before (new arrays)"], steps["preprocess_batch after (reused colour buffer)"]
            print(f"  after / before: {after / before:.2f}")
            rows.append({"model": mname, "provider": "preprocess (CPU)", "batch": 32, "ms_per_frame_p50": after,
                         "ms_per_frame_p50_before": before})
            h, w = mspec.shape[1], mspec.shape[2]
            for label, providers, fp16 in _providers():
                backends = {io: load_backend(path, "onnx", threads=2, warmup=3, providers=providers, trt_fp16=fp16,
                                             trt_cache_root=Path(tmp) / "trt", io_binding=io,
                                             model_sha256="bench" + label.replace(" ", ""))
                            for io in (False, True)}
                for n in BATCHES:
                    x = rng.uniform(0, 255, (n, h, w, 1)).astype(np.float32)
                    lats = _interleaved({io: (lambda b=b: b.run(x)) for io, b in backends.items()}, rounds=6)
                    for io, backend in backends.items():
                        lat = lats[io]
                        row = {"model": mname, "provider": label, "serving": backend.provider, "batch": n,
                               "io_binding": io, "ms_per_call_p50": float(np.median(lat)),
                               "ms_per_call_p99": float(np.percentile(lat, 99)),
                               "ms_per_frame_p50": float(np.median(lat)) / n,
                               "frames_per_s": n / (float(np.median(lat)) / 1000)}
                        rows.append(row)
                        print(f"{mname:16s} {label:14s} batch {n:2d} io_binding {'on ' if io else 'off'}: "
                              f"p50 {row['ms_per_call_p50']:.3f} ms, p99 {row['ms_per_call_p99']:.3f} ms, "
                              f"{row['frames_per_s']:.0f} frames/s")
    loop = _loop_where_preprocessing_runs(shipped)
    for k, v in loop.items():
        print(f"loop, 1 worker, 640x480 frames, {k}: {v}")
    import onnxruntime as ort

    return {"machine": machine(), "gpu": _gpu(), "loop_preprocessing": loop, "onnxruntime": ort.__version__,
            "providers_available": ort.get_available_providers(), "rows": rows,
            "preprocessing_ms_per_frame": preprocessing}
