"""Counters and latency windows of the running service, and their Prometheus text form."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, int(round(q / 100.0 * (len(sorted_values) - 1)))))
    return float(sorted_values[i])


class RateWindow:
    """Events per second over the last `span_s` seconds (the service's fps, and each camera's)."""

    def __init__(self, window: int = 2048, span_s: float = 10.0) -> None:
        self._lock = threading.Lock()
        self._times: deque[float] = deque(maxlen=window)
        self.span_s = span_s

    def add(self, n: int, now: float | None = None) -> None:
        t = time.monotonic() if now is None else now
        with self._lock:
            self._times.extend([t] * n)

    def rate(self, now: float | None = None) -> float:
        t = time.monotonic() if now is None else now
        with self._lock:
            recent = [x for x in self._times if t - x <= self.span_s]
        span = (t - recent[0]) if len(recent) > 1 else 0.0
        return (len(recent) - 1) / span if span > 0 else 0.0


class Metrics:
    """Thread-safe counters; snapshot() gives a plain dict for /api/status, /metrics and MQTT state."""

    COUNTERS = ("frames_captured", "parts_triggered", "parts_inspected", "defects", "frames_dropped",
                "batches", "store_errors", "classifier_swaps")

    def __init__(self, window: int = 2048) -> None:
        self._lock = threading.Lock()
        self.counters = {k: 0 for k in self.COUNTERS}
        self.infer_ms: deque[float] = deque(maxlen=window)
        self.e2e_ms: deque[float] = deque(maxlen=window)
        self._done = RateWindow(window)
        self.started = time.monotonic()

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def parts_done(self, infer_ms: list[float], e2e_ms: list[float], defects: int) -> None:
        now = time.monotonic()
        with self._lock:
            self.counters["parts_inspected"] += len(e2e_ms)
            self.counters["defects"] += defects
            self.counters["batches"] += 1
            self.infer_ms.extend(infer_ms)
            self.e2e_ms.extend(e2e_ms)
        self._done.add(len(e2e_ms), now)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            c = dict(self.counters)
            infer = sorted(self.infer_ms)
            e2e = sorted(self.e2e_ms)
        now = time.monotonic()
        return {**c, "fps": self._done.rate(now), "uptime_s": now - self.started,
                "inference_ms_p50": percentile(infer, 50), "inference_ms_p99": percentile(infer, 99),
                "latency_ms_p50": percentile(e2e, 50), "latency_ms_p99": percentile(e2e, 99),
                "defect_rate": c["defects"] / c["parts_inspected"] if c["parts_inspected"] else 0.0}


_HELP = {
    "frames_captured": ("counter", "Frames read from the source"),
    "parts_triggered": ("counter", "Frames the trigger took as parts"),
    "parts_inspected": ("counter", "Parts classified and committed to the store"),
    "defects": ("counter", "Parts classified as defective"),
    "frames_dropped": ("counter", "Parts dropped because the queue was full (oldest first)"),
    "frames_corrupt": ("counter", "Frames that could not be decoded"),
    "source_reopens": ("counter", "Times the source was reopened by the watchdog"),
    "store_errors": ("counter", "Batches that could not be written to the store"),
    "classifier_swaps": ("counter", "Model swaps (over-the-air updates, rollbacks)"),
    "fps": ("gauge", "Parts inspected per second over the last 10 s"),
    "queue_depth": ("gauge", "Parts waiting for inference"),
    "defect_rate": ("gauge", "Defective share of parts inspected since start"),
    "outbox_rows": ("gauge", "Messages waiting in the MQTT outbox"),
    "outbox_bytes": ("gauge", "Bytes waiting in the MQTT outbox"),
    "rss_bytes": ("gauge", "Resident memory of the service"),
    "camera_up": ("gauge", "1 when the source delivers frames, 0 when reconnecting or down"),
    "uptime_s": ("gauge", "Seconds since start"),
    # MQTT sync (edge/sync_worker.py)
    "mqtt_connected": ("gauge", "1 while connected to the MQTT broker"),
    "mqtt_published": ("counter", "Outbox messages handed to the broker (QoS 1)"),
    "mqtt_acked": ("counter", "Outbox rows deleted after the broker's PUBACK"),
    "mqtt_resent": ("counter", "Messages sent again after a reconnect (duplicates possible, loss not)"),
    "mqtt_dropped": ("counter", "Outbox rows dropped by the cap policy (telemetry first, events last)"),
    "mqtt_rejected": ("counter", "Outbox rows the broker refused or MQTT cannot carry"),
    "mqtt_in_flight": ("gauge", "Messages published and not yet acknowledged"),
}


_CAMERA_HELP = {
    "up": ("gauge", "1 when this camera delivers frames, 0 when reconnecting or down"),
    "seconds_since_frame": ("gauge", "Seconds since this camera's last frame"),
    "frames_captured": ("counter", "Frames read from this camera"),
    "parts_triggered": ("counter", "Frames of this camera the trigger took as parts"),
    "frames_dropped": ("counter", "Parts dropped because the queue was full when this camera delivered"),
    "parts_inspected": ("counter", "Parts of this camera classified and committed"),
    "defects": ("counter", "Parts of this camera classified as defective"),
    "frames_corrupt": ("counter", "Frames of this camera that could not be decoded"),
    "source_reopens": ("counter", "Times this camera was reopened by the watchdog"),
    "capture_errors": ("counter", "Frames of this camera that could not be taken (ROI not fitting, trigger failing)"),
    "fps": ("gauge", "Parts of this camera inspected per second over the last 10 s"),
    "defect_rate": ("gauge", "Defective share of this camera's parts since start"),
}


def _camera_lines(prefix: str, labels: dict[str, str], cameras: list[dict[str, Any]]) -> list[str]:
    """Per-camera series, labelled `camera` and `sku` ([[sources]])."""
    lines: list[str] = []
    for key, (kind, help_text) in _CAMERA_HELP.items():
        name = f"{prefix}_camera_{key}" + ("_total" if kind == "counter" else "")
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for cam in cameras:
            lab = ",".join(f'{k}="{_esc(v)}"' for k, v in {**labels, "camera": cam["id"], "sku": cam["sku"]}.items())
            if key == "up":
                v = 1.0 if cam["status"] == "ok" else 0.0
            elif key in ("seconds_since_frame", "frames_corrupt", "source_reopens", "fps", "defect_rate"):
                v = float(cam[key] or 0.0)
            else:
                v = float(cam["counters"].get(key, 0))
            lines.append(f"{name}{{{lab}}} {v:g}")
    return lines


def prometheus_text(values: dict[str, Any], *, prefix: str = "smartstock", labels: dict[str, str] | None = None,
                    model: dict[str, str] | None = None, cameras: list[dict[str, Any]] | None = None) -> str:
    """Prometheus exposition format (text 0.0.4) for the numeric values we know, plus latency summaries;
    `model` (id, release, provider) becomes an info metric `<prefix>_model_info{...} 1`; `cameras`
    (App.cameras_status) become `<prefix>_camera_*{camera="...",sku="..."}` series."""
    lab = ",".join(f'{k}="{_esc(v)}"' for k, v in (labels or {}).items())
    lines: list[str] = []
    if model:
        info = ",".join(f'{k}="{_esc(v)}"' for k, v in {**(labels or {}), **model}.items())
        lines += [f"# HELP {prefix}_model_info The model serving and where it runs (execution provider)",
                  f"# TYPE {prefix}_model_info gauge", f"{prefix}_model_info{{{info}}} 1"]
    for key, (kind, help_text) in _HELP.items():
        if key not in values or values[key] is None:
            continue
        name = f"{prefix}_{key}" + ("_total" if kind == "counter" else "")
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{{{lab}}} {float(values[key]):g}"]
    for key, help_text in (("inference_ms", "Model inference time per part"),
                           ("latency_ms", "Frame capture to committed result")):
        name = f"{prefix}_{key.replace('_ms', '_seconds')}"
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} summary"]
        for q in ("50", "99"):
            v = float(values.get(f"{key}_p{q}", 0.0)) / 1000.0
            sep = "," if lab else ""
            lines.append(f'{name}{{{lab}{sep}quantile="0.{q}"}} {v:g}')
    if cameras:
        lines += _camera_lines(prefix, labels or {}, cameras)
    return "\n".join(lines) + "\n"


def _esc(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
