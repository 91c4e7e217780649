"""Helpers shared by benchmarks: timing, memory, where the shared data lives, writing results."""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED_DATA = Path(os.environ.get("SMARTSTOCK_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_data(name: str) -> Path | None:
    """Path of a file in ../shared/data, or None with a message when it is absent (a user's clone)."""
    p = SHARED_DATA / name
    if not p.exists():
        print(f"skipped: {p} not found (benchmarks on real data need ../shared/data; "
              f"set SMARTSTOCK_SHARED_DATA to its folder)")
        return None
    return p


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def time_per_call(fn: Callable[[], Any], *, min_time_s: float = 1.0, warmup: int = 3) -> dict[str, float]:
    """Call fn repeatedly for at least min_time_s; return mean/p50/p99 in ms and calls/s."""
    for _ in range(warmup):
        fn()
    times = []
    t_end = time.perf_counter() + min_time_s
    while time.perf_counter() < t_end or len(times) < 5:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    mean = sum(times) / len(times)
    return {"n": len(times), "mean_ms": mean * 1e3, "p50_ms": times[len(times) // 2] * 1e3,
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3, "per_s": 1.0 / mean}


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine()}


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
               **result}
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path
