"""Edge loop vs the bare model on the same frames, in one run.

Measures (on the shipped defect model, CPU, the product's default inference layout from
`VisionConfig`: one single-threaded worker per core):
  * throughput, rounds interleaved: the bare backend run the way the loop runs it (`workers`
    threads calling backend.run on preprocessed batches), the bare backend as one runtime using all
    threads (the other layout, for comparison), classify_batch (with preprocessing) and the full
    loop (capture thread -> queue -> batching workers -> SQLite commit of inspection + movement +
    outbox event); ratios per round, median over rounds, against the faster bare layout;
  * the same loop vs bare comparison on a heavier CNN built here with `onnx` (about 8x the shipped
    model's work per frame), to show how the loop's fixed per-part cost weighs on a larger model;
  * frame-to-result latency p50/p99 with a camera paced at half the loop's throughput;
  * the loop with 1, 2 and 4 replayed folder cameras ([[sources]]: one capture thread per camera,
    one queue, one shared model), parts/s in total and each camera's share;
  * start-up time and RSS of `smartstock run` (time until the HTTP port is written);
  * RSS at the start and end of a long replay (SMARTSTOCK_BENCH_LONG_FRAMES, default 200000,
    capped by SMARTSTOCK_BENCH_LONG_MAX_S seconds; the frames actually done are reported).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks._common import ROOT, rss_mb
from edge.capture.base import Frame, FrameSource
from edge.loop import Camera, InspectionLoop, LoopSettings
from smartstock.store import open_store

BATCH = 8


class MemorySource(FrameSource):
    """Replays frames held in memory: `n` frames in total (cycling), optionally paced at `fps`."""

    kind = "memory"

    def __init__(self, images: list[np.ndarray], n: int, fps: float = 0.0) -> None:
        self.images, self.n, self.fps = images, n, fps
        self.realtime = fps > 0
        self.i = 0
        self._wake = threading.Event()
        self._next = time.monotonic()

    @property
    def ended(self) -> bool:
        return self.i >= self.n

    def read(self, timeout: float) -> Frame | None:
        if self.ended:
            return None
        if self.fps:
            delay = self._next - time.monotonic()
            if delay > 0:
                self._wake.wait(min(delay, timeout))
                if delay > timeout:
                    return None
            self._next = max(self._next + 1.0 / self.fps, time.monotonic() - 0.5)
        img = self.images[self.i % len(self.images)]
        self.i += 1
        return Frame(image=img, index=self.i)

    def close(self) -> None:
        self._wake.set()


def _frames(n: int = 256) -> tuple[list[np.ndarray], str]:
    """The demo's sample parts (the shipped model's own kind of image), cycled up to n frames."""
    import cv2

    from edge.demo_appliance import SAMPLE_PARTS

    files = sorted(SAMPLE_PARTS.glob("*.png"))
    imgs = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in files]
    return [imgs[i % len(imgs)] for i in range(n)], f"{n} frames cycling the {len(imgs)} sample parts (edge/sample_parts)"


def _run_loop(clf, images, n: int, fps: float = 0.0, batch_max: int = BATCH, queue_size: int = 64, workers: int = 1):
    with tempfile.TemporaryDirectory() as d:
        store = open_store(d)
        loop = InspectionLoop(MemorySource(images, n, fps), clf, store,
                              LoopSettings(sku="BENCH", device_id="bench", events_topic="b/events", queue_size=queue_size,
                                           batch_max=batch_max, workers=workers))
        t0 = time.perf_counter()
        loop.start()
        loop.done.wait()
        dt = time.perf_counter() - t0
        loop.stop()
        snap = loop.metrics.snapshot()
        store.close()
    return dt, snap


def _in_threads(fn, jobs: list, threads: int) -> float:
    """Run fn(job) for every job, spread over `threads` threads; returns the wall time."""
    def work(k: int) -> None:
        for job in jobs[k::threads]:
            fn(job)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - t0


def _throughput(clf, clf_one_runtime, images, workers: int, rounds: int = 5, passes: int = 24) -> dict:
    """Each measurement handles the same frames `passes` times (len(images) * passes parts); rounds
    are interleaved (the machine is shared and noisy) and ratios are taken within a round."""
    pre = [np.stack([clf.preprocess(f) for f in images[i:i + BATCH]]) for i in range(0, len(images), BATCH)]
    raw = [images[i:i + BATCH] for i in range(0, len(images), BATCH)]
    n = len(images) * passes
    runs: dict[str, list[float]] = {"backend": [], "backend_one_runtime": [], "classifier": [], "loop": []}
    for _ in range(rounds):
        runs["backend"].append(n / _in_threads(clf.backend.run, pre * passes, workers))
        runs["backend_one_runtime"].append(n / _in_threads(clf_one_runtime.backend.run, pre * passes, 1))
        runs["classifier"].append(n / _in_threads(clf.classify_batch, raw * passes, workers))
        dt, snap = _run_loop(clf, images, n, workers=workers)
        runs["loop"].append(snap["parts_inspected"] / dt)
    vs_bare = [loop / max(a, b) for loop, a, b in zip(runs["loop"], runs["backend"], runs["backend_one_runtime"])]
    vs_clf = [loop / c for loop, c in zip(runs["loop"], runs["classifier"])]
    return {"parts_per_s": {k: statistics.median(v) for k, v in runs.items()}, "runs": runs,
            "loop_vs_backend": statistics.median(vs_bare), "loop_vs_backend_runs": vs_bare,
            "loop_vs_classifier": statistics.median(vs_clf), "batch": BATCH, "workers": workers,
            "parts_per_measurement": n}


def _heavier(clf, images, workers: int, rounds: int = 3, passes: int = 6) -> dict | None:
    """Loop vs bare backend on a CNN about 8x the shipped model's work per frame (random weights: only
    the time matters), built with `onnx` (the train extra); None when onnx is not installed."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        print("skipped heavier model: the onnx package is not installed (pip install '.[train]')")
        return None
    from smartstock.runtime.backends import load_backend
    from smartstock.vision.classifier import DefectClassifier

    with tempfile.TemporaryDirectory() as d:
        path = _build_heavier_onnx(Path(d) / "heavier.onnx", clf.manifest.input.height, len(clf.labels))
        backend = load_backend(path, threads=1)
        heavy = DefectClassifier(backend, clf.manifest.model_copy(update={"model_id": "bench-heavier"}), path)
        pre = [np.stack([heavy.preprocess(f) for f in images[i:i + BATCH]]) for i in range(0, len(images), BATCH)]
        n = len(images) * passes
        bare, loop = [], []
        for _ in range(rounds):
            bare.append(n / _in_threads(backend.run, pre * passes, workers))
            dt, snap = _run_loop(heavy, images, n, workers=workers)
            loop.append(snap["parts_inspected"] / dt)
    ratios = [lp / b for lp, b in zip(loop, bare)]
    return {"parts_per_s": {"backend": statistics.median(bare), "loop": statistics.median(loop)},
            "ms_per_part_one_core": workers * 1000.0 / statistics.median(bare),
            "loop_vs_backend": statistics.median(ratios), "loop_vs_backend_runs": ratios, "parts_per_measurement": n}


def _build_heavier_onnx(path: Path, size: int, n_out: int) -> Path:
    """NHWC gray input -> 4 conv layers (32-32-64-64 channels, two stride 2) -> global pool -> softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [helper.make_node("Transpose", ["image"], ["x0"], perm=[0, 3, 1, 2])], []
    c_in, x = 1, "x0"
    for i, (c_out, stride) in enumerate(((32, 1), (32, 2), (64, 1), (64, 2))):
        w = rng.normal(0, (2.0 / (9 * c_in)) ** 0.5, (c_out, c_in, 3, 3)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(c_out, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1], strides=[stride, stride]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        c_in, x = c_out, f"r{i}"
    inits += [numpy_helper.from_array(rng.normal(0, 0.1, (c_in, n_out)).astype(np.float32), "wd"),
              numpy_helper.from_array(np.zeros(n_out, np.float32), "bd")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "wd", "bd"], ["logits"]), helper.make_node("Softmax", ["logits"], ["scores"], axis=1)]
    graph = helper.make_graph(nodes, "heavier", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", size, size, 1])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", n_out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _latency(clf, images, loop_fps: float, workers: int) -> dict:
    fps = max(1.0, loop_fps / 2)
    n = int(min(2000, fps * 8))
    _, snap = _run_loop(clf, images, n, fps=fps, workers=workers)
    return {"camera_fps": fps, "parts": snap["parts_inspected"], "dropped": snap["frames_dropped"],
            "frame_to_result_ms_p50": snap["latency_ms_p50"], "frame_to_result_ms_p99": snap["latency_ms_p99"],
            "inference_ms_p50": snap["inference_ms_p50"], "inference_ms_p99": snap["inference_ms_p99"]}


def _cameras(clf, images, workers: int, counts: tuple[int, ...] = (1, 2, 4), parts: int = 3000) -> dict:
    """The loop fed by 1, 2, 4 folder cameras replaying PNGs as fast as they are taken (each decodes
    its own files in its own capture thread); the same number of parts for every count, one run each."""
    import cv2

    from edge.capture import open_source
    from smartstock.config import CameraConfig

    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as d:
        for k in range(max(counts)):
            folder = Path(d) / f"cam{k}"
            folder.mkdir()
            for i, img in enumerate(images[:32]):
                cv2.imwrite(str(folder / f"p{i:03d}.png"), img)
        for n_cams in counts:
            cfgs = [CameraConfig(id=f"cam{k}", uri=str(Path(d) / f"cam{k}"), sku=f"BENCH-{k}", loop=True)
                    for k in range(n_cams)]
            cams = [Camera(c.id, open_source(c), c.sku) for c in cfgs]
            with tempfile.TemporaryDirectory() as sd:
                store = open_store(sd)
                loop = InspectionLoop(None, clf, store, LoopSettings(
                    sku="BENCH", device_id="bench", events_topic="b/events", queue_size=64, batch_max=BATCH,
                    workers=workers, max_parts=parts), cameras=cams)
                t0 = time.perf_counter()
                loop.start()
                loop.done.wait()
                dt = time.perf_counter() - t0
                loop.stop()
                for c in cams:
                    c.source.close()
                store.close()
            done = sum(c.counters["parts_inspected"] for c in cams)
            out[str(n_cams)] = {"parts": done, "seconds": dt, "parts_per_s": done / dt,
                                "share_per_camera": [round(c.counters["parts_inspected"] / max(1, done), 3) for c in cams]}
    return {"cameras": out, "parts_per_count": parts, "workers": workers, "batch": BATCH,
            "frames": "32 sample-part PNGs per camera folder, looped, decoded by each camera's capture thread"}


def _startup(model: Path, images) -> dict:
    import cv2

    with tempfile.TemporaryDirectory() as d:
        parts = Path(d) / "parts"
        parts.mkdir()
        for i, img in enumerate(images[:20]):
            cv2.imwrite(str(parts / f"p{i:03d}.png"), img)
        state = Path(d) / "state"
        env = {**os.environ, "OMP_NUM_THREADS": "2"}
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "smartstock", "run", "--source", str(parts), "--loop", "--fps", "10",
                                 "--model", str(model), "--state-dir", str(state), "--http-port", "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        try:
            while not (state / "http.port").exists():
                if proc.poll() is not None or time.perf_counter() - t0 > 120:
                    return {"error": f"service did not start (rc {proc.returncode})"}
                time.sleep(0.01)
            startup = time.perf_counter() - t0
            time.sleep(3.0)
            rss = _proc_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(20)
    return {"startup_s": startup, "service_rss_mb": rss}


def _proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _long_replay(clf, images, workers: int) -> dict:
    target = int(os.environ.get("SMARTSTOCK_BENCH_LONG_FRAMES", "200000"))
    max_s = float(os.environ.get("SMARTSTOCK_BENCH_LONG_MAX_S", "300"))
    with tempfile.TemporaryDirectory() as d:
        store = open_store(d)
        src = MemorySource(images, target)
        loop = InspectionLoop(src, clf, store, LoopSettings(sku="BENCH", device_id="bench", events_topic="b/events",
                                                            queue_size=64, batch_max=BATCH, workers=workers))
        loop.start()
        warm = min(2000, target // 10)
        while loop.metrics.counters["parts_inspected"] < warm and not loop.done.is_set():
            loop.done.wait(0.1)
        rss_start, done_start, t0 = rss_mb(), loop.metrics.counters["parts_inspected"], time.perf_counter()
        samples = [rss_start]
        while not loop.done.wait(5.0):
            samples.append(rss_mb())
            if time.perf_counter() - t0 > max_s:
                src.n = src.i  # end the replay here
        loop.stop()
        done = loop.metrics.counters["parts_inspected"]
        rss_end = rss_mb()
        db_mb = sum(p.stat().st_size for p in Path(d).iterdir()) / 1e6
        store.close()
    return {"frames_target": target, "frames_done": done, "rss_mb_start": rss_start, "rss_mb_end": rss_end,
            "rss_mb_max": max(samples + [rss_end]), "rss_growth_mb": rss_end - rss_start,
            "measured_from_frame": done_start, "seconds": time.perf_counter() - t0, "store_mb": db_mb,
            "scaled_down": done < target}


def main() -> dict | None:
    from smartstock.config import VisionConfig
    from smartstock.errors import ModelError
    from smartstock.vision.classifier import DefectClassifier, default_model_path

    try:
        model = Path(os.environ.get("SMARTSTOCK_BENCH_MODEL", "")) if os.environ.get("SMARTSTOCK_BENCH_MODEL") \
            else default_model_path()
    except ModelError as e:
        print(f"skipped: {e}")
        return None
    v = VisionConfig()  # the product's default layout
    workers = v.worker_count
    clf = DefectClassifier.load(model, threads=v.threads_per_worker)
    clf_one_runtime = DefectClassifier.load(model, threads=v.threads)
    images, what = _frames()
    t = _throughput(clf, clf_one_runtime, images, workers)
    p = t["parts_per_s"]
    print(f"frames: {what}; model {clf.model_id} r{clf.release} ({model.name}); {workers} workers x "
          f"{v.threads_per_worker} thread, batch {BATCH}; medians of {len(t['runs']['loop'])} interleaved rounds")
    print(f"throughput parts/s: bare backend {p['backend']:.0f} ({workers} callers x {v.threads_per_worker} thread), "
          f"bare backend {p['backend_one_runtime']:.0f} (1 caller x {v.threads} threads), "
          f"classify_batch {p['classifier']:.0f}, loop {p['loop']:.0f}")
    print(f"-> loop keeps {t['loop_vs_backend']:.0%} of the faster bare backend "
          f"(rounds: {', '.join(f'{r:.0%}' for r in t['loop_vs_backend_runs'])}), "
          f"{t['loop_vs_classifier']:.0%} of classify_batch")
    heavy = _heavier(clf, images, workers)
    if heavy:
        print(f"heavier CNN ({heavy['ms_per_part_one_core']:.2f} ms/part on one core): bare backend "
              f"{heavy['parts_per_s']['backend']:.0f} parts/s, loop {heavy['parts_per_s']['loop']:.0f} -> loop keeps "
              f"{heavy['loop_vs_backend']:.0%} (rounds: {', '.join(f'{r:.0%}' for r in heavy['loop_vs_backend_runs'])})")
    lat = _latency(clf, images, p["loop"], workers)
    print(f"latency at {lat['camera_fps']:.0f} fps: frame-to-result p50 {lat['frame_to_result_ms_p50']:.1f} ms, "
          f"p99 {lat['frame_to_result_ms_p99']:.1f} ms (inference p50 {lat['inference_ms_p50']:.1f} ms)")
    cams = _cameras(clf, images, workers)
    print("folder cameras -> loop parts/s: " + ", ".join(
        f"{k} camera(s) {c['parts_per_s']:.0f} (shares {c['share_per_camera']})" for k, c in cams["cameras"].items()))
    st = _startup(model, images)
    print(f"service start-up: {st.get('startup_s', float('nan')):.2f} s to HTTP ready, RSS {st.get('service_rss_mb', 0):.0f} MB")
    lr = _long_replay(clf, images, workers)
    print(f"long replay: {lr['frames_done']} frames{' (scaled down: time cap)' if lr['scaled_down'] else ''}; "
          f"RSS {lr['rss_mb_start']:.0f} MB after {lr['measured_from_frame']} frames -> {lr['rss_mb_end']:.0f} MB at the end "
          f"(max {lr['rss_mb_max']:.0f}); store {lr['store_mb']:.0f} MB")
    return {"model": {"id": clf.model_id, "release": clf.release, "file": model.name}, "frames": what,
            "throughput": t, "heavier_model": heavy, "latency": lat, "cameras": cams, "startup": st, "long_replay": lr,
            "note": "CPU timings on a shared machine; ratios are measured side by side in one run"}


if __name__ == "__main__":
    main()
