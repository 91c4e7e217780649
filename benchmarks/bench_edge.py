"""Edge loop vs the bare model on the same frames, in one run.

Measures (all on the shipped defect model, CPU):
  * throughput: bare backend (backend.run on preprocessed batches), bare classifier (classify_batch,
    with preprocessing) and the full loop (capture thread -> queue -> batching worker -> SQLite commit
    of inspection + movement + outbox event) over the same in-memory frames; ratio loop / bare;
  * frame-to-result latency p50/p99 with a camera paced at half the loop's throughput;
  * start-up time and RSS of `smartstock run` (time until the HTTP port is written);
  * RSS at the start and end of a long replay (SMARTSTOCK_BENCH_LONG_FRAMES, default 200000,
    capped by SMARTSTOCK_BENCH_LONG_MAX_S seconds; the frames actually done are reported).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks._common import ROOT, rss_mb
from edge.capture.base import Frame, FrameSource
from edge.loop import InspectionLoop, LoopSettings
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

    from edge.demo import SAMPLE_PARTS

    files = sorted(SAMPLE_PARTS.glob("*.png"))
    imgs = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in files]
    return [imgs[i % len(imgs)] for i in range(n)], f"{n} frames cycling the {len(imgs)} sample parts (edge/sample_parts)"


def _run_loop(clf, images, n: int, fps: float = 0.0, batch_max: int = BATCH, queue_size: int = 64):
    with tempfile.TemporaryDirectory() as d:
        store = open_store(d)
        loop = InspectionLoop(MemorySource(images, n, fps), clf, store,
                              LoopSettings(sku="BENCH", device_id="bench", events_topic="b/events", queue_size=queue_size,
                                           batch_max=batch_max))
        t0 = time.perf_counter()
        loop.start()
        loop.done.wait()
        dt = time.perf_counter() - t0
        loop.stop()
        snap = loop.metrics.snapshot()
        store.close()
    return dt, snap


def _throughput(clf, images, rounds: int = 3, passes: int = 24) -> dict:
    """Each measurement handles the same frames `passes` times (len(images) * passes parts)."""
    pre = [np.stack([clf.preprocess(f) for f in images[i:i + BATCH]]) for i in range(0, len(images), BATCH)]
    n = len(images) * passes
    best = {"backend": 0.0, "classifier": 0.0, "loop": 0.0}
    for _ in range(rounds):  # interleaved, best of rounds: the machine is shared and noisy
        t0 = time.perf_counter()
        for _ in range(passes):
            for b in pre:
                clf.backend.run(b)
        best["backend"] = max(best["backend"], n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for _ in range(passes):
            for i in range(0, len(images), BATCH):
                clf.classify_batch(images[i:i + BATCH])
        best["classifier"] = max(best["classifier"], n / (time.perf_counter() - t0))
        dt, snap = _run_loop(clf, images, n)
        best["loop"] = max(best["loop"], snap["parts_inspected"] / dt)
    return {"parts_per_s": best, "loop_vs_backend": best["loop"] / best["backend"],
            "loop_vs_classifier": best["loop"] / best["classifier"], "batch": BATCH, "parts_per_measurement": n}


def _latency(clf, images, loop_fps: float) -> dict:
    fps = max(1.0, loop_fps / 2)
    n = int(min(2000, fps * 8))
    _, snap = _run_loop(clf, images, n, fps=fps)
    return {"camera_fps": fps, "parts": snap["parts_inspected"], "dropped": snap["frames_dropped"],
            "frame_to_result_ms_p50": snap["latency_ms_p50"], "frame_to_result_ms_p99": snap["latency_ms_p99"],
            "inference_ms_p50": snap["inference_ms_p50"], "inference_ms_p99": snap["inference_ms_p99"]}


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


def _long_replay(clf, images) -> dict:
    target = int(os.environ.get("SMARTSTOCK_BENCH_LONG_FRAMES", "200000"))
    max_s = float(os.environ.get("SMARTSTOCK_BENCH_LONG_MAX_S", "300"))
    with tempfile.TemporaryDirectory() as d:
        store = open_store(d)
        src = MemorySource(images, target)
        loop = InspectionLoop(src, clf, store, LoopSettings(sku="BENCH", device_id="bench", events_topic="b/events",
                                                            queue_size=64, batch_max=BATCH))
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
    from smartstock.errors import ModelError
    from smartstock.vision.classifier import DefectClassifier, default_model_path

    try:
        model = Path(os.environ.get("SMARTSTOCK_BENCH_MODEL", "")) if os.environ.get("SMARTSTOCK_BENCH_MODEL") \
            else default_model_path()
    except ModelError as e:
        print(f"skipped: {e}")
        return None
    clf = DefectClassifier.load(model, threads=2)
    images, what = _frames()
    t = _throughput(clf, images)
    p = t["parts_per_s"]
    print(f"frames: {what}; model {clf.model_id} r{clf.release} ({model.name})")
    print(f"throughput parts/s: bare backend {p['backend']:.0f}, bare classifier {p['classifier']:.0f}, "
          f"loop {p['loop']:.0f} -> loop keeps {t['loop_vs_backend']:.0%} of the backend, "
          f"{t['loop_vs_classifier']:.0%} of classify_batch (batch {BATCH})")
    lat = _latency(clf, images, p["loop"])
    print(f"latency at {lat['camera_fps']:.0f} fps: frame-to-result p50 {lat['frame_to_result_ms_p50']:.1f} ms, "
          f"p99 {lat['frame_to_result_ms_p99']:.1f} ms (inference p50 {lat['inference_ms_p50']:.1f} ms)")
    st = _startup(model, images)
    print(f"service start-up: {st.get('startup_s', float('nan')):.2f} s to HTTP ready, RSS {st.get('service_rss_mb', 0):.0f} MB")
    lr = _long_replay(clf, images)
    print(f"long replay: {lr['frames_done']} frames{' (scaled down: time cap)' if lr['scaled_down'] else ''}; "
          f"RSS {lr['rss_mb_start']:.0f} MB after {lr['measured_from_frame']} frames -> {lr['rss_mb_end']:.0f} MB at the end "
          f"(max {lr['rss_mb_max']:.0f}); store {lr['store_mb']:.0f} MB")
    return {"model": {"id": clf.model_id, "release": clf.release, "file": model.name}, "frames": what,
            "throughput": t, "latency": lat, "startup": st, "long_replay": lr,
            "note": "CPU timings on a shared machine; ratios are measured side by side in one run"}


if __name__ == "__main__":
    main()
