"""Defect model speed: Keras predict vs ONNX Runtime vs LiteRT float vs LiteRT int8, side by side in one run.

Per-frame latency (batch 1, 1 thread, then 2 threads) and throughput (batch 8), plus the model's FLOPs and
the fraction of the CPU's peak the fastest runtime reaches.

Peak estimate (an assumption, stated in the output): threads x clock x FLOPs per cycle per core, with
FLOPs/cycle from the SIMD flags: AVX-512 = 64 (2 FMA units x 16 fp32 x 2), AVX2+FMA = 32 (2 x 8 x 2),
SSE only = 8, aarch64 NEON = 16 (2 x 4 x 2; a Cortex-A72 has 1 FMA pipe, so 8 there). The clock is
the highest `cpu MHz` in /proc/cpuinfo (turbo may be higher, so the fraction is an upper bound).
int8 runs are compared against the fp32 peak too (int8 SIMD peaks are 2-4x higher).
The good-parts-only detector (ONNX, TFLite float, TFLite int8 backbone with a float distance tail) runs
in the same table, so its cost per part reads beside the classifier's.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import time_per_call

MIN_TIME_S = 1.5
GOOD_ONLY = "good-only"


def _good_only_rows(tmp: Path, frame: np.ndarray) -> dict[str, Any]:
    """The good-parts-only detector beside the classifier: SMARTSTOCK_BENCH_GOODONLY_MODEL (a folder), or
    one built here on generated good surfaces with the default recipe. Its speed depends on the recipe
    (image size, layers, bank size), not on the images; a random bank is used to build it quickly (a
    coreset bank of the same size runs at the same speed)."""
    from smartstock.runtime import decode_array
    from smartstock.runtime.backends import load_backend
    from smartstock.vision import DefectClassifier, load_manifest

    override = os.environ.get("SMARTSTOCK_BENCH_GOODONLY_MODEL")
    if override:
        path = Path(override) / "goodonly.onnx"
    else:
        from training.goodonly import GoodOnlyRecipe
        from training.goodonly_export import train_and_export
        from training.synth import generate

        recipe = GoodOnlyRecipe(sampler="random", model_id="bench-goodonly")
        generate(tmp / "data", 60, seed=1, size=recipe.image_size, classes="binary", ok_fraction=1.0)
        path = Path(train_and_export(tmp / "data", tmp / "model", recipe)["files"]["onnx"])
    m = load_manifest(path)
    x1 = decode_array(m.golden_inputs).astype(np.float32)[:1]
    x8 = np.concatenate([x1] * 8)
    rows: dict[str, dict[str, Any]] = {}
    for threads in (1, 2):
        for fmt, art in m.artifacts.items():
            b = load_backend(path.with_name(art.file), "onnx" if fmt == "onnx" else "tflite", threads=threads,
                             warmup=3)
            rows[f"{GOOD_ONLY} {fmt} ({threads} thread{'s' if threads > 1 else ''})"] = {
                "frame": time_per_call(lambda b=b: b.run_outputs(x1), min_time_s=MIN_TIME_S),
                "batch8": time_per_call(lambda b=b: b.run_outputs(x8), min_time_s=MIN_TIME_S)}
    det = DefectClassifier.load(path, threads=1)
    rows[f"{GOOD_ONLY} classify() 640x480 BGR incl. preprocess + heat map (1 thread)"] = {
        "frame": time_per_call(lambda: det.classify(frame), min_time_s=MIN_TIME_S)}
    a = m.anomaly
    print(f"good-only detector {m.model_id}: input {m.input.shape[1:]}, {'+'.join(a.layers)}, bank {a.bank_size}: "
          + ", ".join(f"{fmt} {art.size / 1e6:.2f} MB" for fmt, art in m.artifacts.items()))
    return {"rows": rows, "model": {"input": m.input.shape, "layers": a.layers, "bank_size": a.bank_size,
                                    "mb": {fmt: art.size / 1e6 for fmt, art in m.artifacts.items()}}}


def cpu_peak_flops_per_core() -> dict[str, Any]:
    flags, mhz = set(), 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags |= set(line.split(":", 1)[1].split())
            elif line.startswith("cpu MHz"):
                mhz = max(mhz, float(line.split(":", 1)[1]))
    except OSError:
        pass
    if "avx512f" in flags:
        per_cycle, simd = 64, "AVX-512 (2 FMA x 16 fp32 x 2)"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, simd = 32, "AVX2+FMA (2 FMA x 8 fp32 x 2)"
    elif platform.machine() in ("aarch64", "arm64"):
        per_cycle, simd = 16, "NEON (2 FMA x 4 fp32 x 2)"
    else:
        per_cycle, simd = 8, "SSE (4 fp32 x 2)"
    ghz = mhz / 1000 if mhz else 2.0
    return {"ghz": ghz, "flops_per_cycle": per_cycle, "simd": simd, "peak_gflops_per_core": ghz * per_cycle,
            "clock_source": "/proc/cpuinfo cpu MHz" if mhz else "assumed 2.0 GHz"}


def _keras_runners(model_dir: Path, x1: np.ndarray) -> dict[str, Any]:
    path = model_dir / "defect.keras"
    if not path.exists():
        print(f"note: {path} not found; Keras baseline skipped (run `make models`)")
        return {}
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf
    except ImportError:
        print("note: TensorFlow not installed; Keras baseline skipped (pip install 'smartstock[train]')")
        return {}
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    model = keras.saving.load_model(path, compile=False)
    return {"keras_predict": lambda x: model.predict(x, verbose=0),
            "keras_call": lambda x: model(x, training=False).numpy()}


def main() -> dict[str, Any]:
    from smartstock.vision import DefectClassifier, default_model_path, load_manifest
    from smartstock.runtime.backends import load_backend
    from smartstock.runtime import decode_array

    override = os.environ.get("SMARTSTOCK_BENCH_DEFECT_MODEL")  # a folder with manifest.json; default: shipped
    model_dir = Path(override) if override else default_model_path().parent
    m = load_manifest(model_dir)
    golden = decode_array(m.golden_inputs).astype(np.float32)
    x1, x8 = golden[:1], np.concatenate([golden] * (8 // len(golden) + 1))[:8]
    flops = int(m.metrics.get("flops", 0))
    peak = cpu_peak_flops_per_core()

    runners = _keras_runners(model_dir, x1)  # Keras in one thread: tf threading is fixed at first use
    backends = {}
    for threads in (1, 2):
        for fmt, art in m.artifacts.items():
            backends[(fmt, threads)] = load_backend(model_dir / art.file, "onnx" if fmt == "onnx" else "tflite",
                                                    threads=threads, warmup=3)

    rows: dict[str, dict[str, float]] = {}
    for name, fn in runners.items():
        rows[f"{name} (1 thread)"] = {"frame": time_per_call(lambda: fn(x1), min_time_s=MIN_TIME_S),
                                      "batch8": time_per_call(lambda: fn(x8), min_time_s=MIN_TIME_S)}
    for (fmt, threads), b in backends.items():
        rows[f"{fmt} ({threads} thread{'s' if threads > 1 else ''})"] = {
            "frame": time_per_call(lambda b=b: b.run(x1), min_time_s=MIN_TIME_S),
            "batch8": time_per_call(lambda b=b: b.run(x8), min_time_s=MIN_TIME_S)}
    clf = DefectClassifier.load(model_dir / m.artifacts["onnx"].file, threads=1)
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    rows["classify() 640x480 BGR incl. preprocess, onnx (1 thread)"] = {
        "frame": time_per_call(lambda: clf.classify(frame), min_time_s=MIN_TIME_S)}
    with tempfile.TemporaryDirectory(prefix="bench-goodonly-") as tmp:
        good_only = _good_only_rows(Path(tmp), frame)
    rows.update(good_only["rows"])

    base_name = next((k for k in rows if k.startswith("keras_predict")), "onnx (1 thread)")
    base = rows[base_name]["frame"]["mean_ms"]
    out_rows = []
    print(f"model {m.model_id} release {m.release}: input {m.input.shape[1:]}, {flops / 1e6:.1f} MFLOPs/frame")
    print(f"CPU peak assumption: {peak['ghz']:.2f} GHz x {peak['flops_per_cycle']} FLOPs/cycle ({peak['simd']}) "
          f"= {peak['peak_gflops_per_core']:.0f} GFLOP/s per core; shared, noisy machine")
    print(f"{'runtime':58s} {'ms/frame':>9s} {'p99':>7s} {'frames/s b8':>12s} {'vs ' + base_name.split()[0]:>18s} "
          f"{'% peak':>7s}")
    for name, r in rows.items():
        threads = 2 if "(2 threads)" in name else 1
        ms = r["frame"]["mean_ms"]
        thr = 8 * r["batch8"]["per_s"] if "batch8" in r else None
        frac = (flops / (ms / 1e3) / (peak["peak_gflops_per_core"] * 1e9 * threads)
                if flops and not name.startswith(GOOD_ONLY) else None)
        out_rows.append({"runtime": name, "ms_per_frame": ms, "p99_ms": r["frame"]["p99_ms"],
                         "frames_per_s_batch8": thr, "speedup_vs_baseline": base / ms, "fraction_of_peak": frac})
        print(f"{name:58s} {ms:9.3f} {r['frame']['p99_ms']:7.3f} {(f'{thr:12.0f}' if thr else ' ' * 12)} "
              f"{base / ms:17.1f}x {(f'{frac * 100:6.2f}%' if frac is not None else ''):>7s}")
    return {"model": m.model_id, "release": m.release, "input": m.input.shape, "flops_per_frame": flops,
            "cpu_peak": peak, "baseline": base_name, "rows": out_rows, "good_only_model": good_only["model"],
            "note": "CPU shared with other jobs: timings are noisy; ratios are measured in this one run"}


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)")
