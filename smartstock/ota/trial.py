"""Watch a freshly installed model on live frames and decide: commit or roll back.

`ObservedModel` wraps the serving classifier (same interface) and keeps a rolling window of what
it produced; the running model's window is the baseline. During a trial `TrialModel` runs the new
model in shadow: every batch goes through the trusted model, whose verdicts (and identity) are
what the loop books, and through the candidate, whose outputs are only watched and paired with the
trusted ones. A live trial (the technician signed the release with `--live-trial`) serves the
candidate's verdicts instead, and a frame it fails on is served by the old model (never lost).
`judge()` is a pure function of the two windows and the limits.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class TrialLimits:
    frames: int = 200               # ota.trial_frames: frames before a decision
    max_s: float = 600.0            # ota.trial_max_s: longest trial
    max_error_rate: float = 0.05    # share of frames the new model may fail on
    max_defect_rate_jump: float = 0.25  # new defect rate - baseline defect rate
    max_slowdown: float = 3.0       # new mean latency / baseline mean latency (fps drop)
    min_baseline: int = 20          # frames the baseline needs before it is compared against
    min_slowdown_ms: float = 2.0    # a slowdown below this many ms per frame is noise, not a regression
    shadow_every: int = 4           # run the old model too on every Nth trial batch (paired comparison)


class Window:
    """Rolling counts of one model's outputs (thread-safe: the loop writes, the agent reads)."""

    def __init__(self, size: int = 2000) -> None:
        self._lock = threading.Lock()
        self._items: deque[tuple[str, bool, float]] = deque(maxlen=size)
        self.errors = 0
        self.frames = 0

    def add(self, label: str, is_defect: bool, latency_ms: float) -> None:
        with self._lock:
            self._items.append((label, is_defect, latency_ms))
            self.frames += 1

    def add_many(self, items: list[tuple[str, bool, float]]) -> None:
        with self._lock:
            self._items.extend(items)
            self.frames += len(items)

    def add_error(self) -> None:
        with self._lock:
            self.errors += 1
            self.frames += 1

    def summary(self) -> dict[str, Any]:
        with self._lock:
            items = list(self._items)
            errors, frames = self.errors, self.frames
        n = len(items)
        labels = Counter(label for label, _, _ in items)
        return {
            "frames": frames, "ok_frames": n, "errors": errors,
            "error_rate": errors / frames if frames else 0.0,
            "defect_rate": sum(d for _, d, _ in items) / n if n else 0.0,
            "mean_latency_ms": sum(lat for _, _, lat in items) / n if n else 0.0,
            "labels": dict(labels),
        }


def judge(trial: dict[str, Any], baseline: dict[str, Any], limits: TrialLimits, elapsed_s: float,
          final: bool) -> tuple[str, str] | None:
    """('rollback', why) / ('commit', summary) / None (keep watching). `final`: time is up."""
    frames, errors = trial["frames"], trial["errors"]
    if errors >= 3 and trial["error_rate"] > limits.max_error_rate:
        return "rollback", f"{errors} of {frames} frames failed ({trial['error_rate']:.0%} > {limits.max_error_rate:.0%})"
    if frames < limits.frames and not final:
        return None
    if trial["error_rate"] > limits.max_error_rate:
        return "rollback", f"error rate {trial['error_rate']:.1%} > {limits.max_error_rate:.1%}"
    n = trial["ok_frames"]
    if n == 0:
        if frames:
            return "rollback", f"all {frames} frames failed"
        return "commit", f"no frames in {elapsed_s:.0f} s (line idle); golden samples passed"
    paired = trial.get("paired") or {"n": 0}
    if paired["n"] >= limits.min_baseline:
        # the same parts through both models: independent of what the line happens to produce
        if paired["new_defect_rate"] - paired["old_defect_rate"] > limits.max_defect_rate_jump:
            return "rollback", (f"on the same {paired['n']} parts the defect rate went from "
                                f"{paired['old_defect_rate']:.1%} (old model) to {paired['new_defect_rate']:.1%} "
                                f"(limit +{limits.max_defect_rate_jump:.0%})")
        if paired["agreement"] < 1.0 - limits.max_defect_rate_jump:
            return "rollback", (f"the new model agrees with the old one on only {paired['agreement']:.0%} of "
                                f"{paired['n']} parts")
        base_rate, base_n, base_label_counts = paired["old_defect_rate"], paired["n"], paired["old_labels"]
    else:
        base_rate, base_n, base_label_counts = baseline.get("defect_rate", 0.0), baseline["ok_frames"], \
            baseline.get("labels", {})
    has_base = base_n >= limits.min_baseline
    if has_base:
        jump = trial["defect_rate"] - base_rate
        if jump > limits.max_defect_rate_jump:
            return "rollback", (f"defect rate jumped from {base_rate:.1%} to {trial['defect_rate']:.1%} "
                                f"(limit +{limits.max_defect_rate_jump:.0%})")
        base_labels = [k for k, v in base_label_counts.items() if v >= 0.05 * base_n]
        if len(trial["labels"]) == 1 and len(base_labels) >= 2 and n >= 20:
            only = next(iter(trial["labels"]))
            return "rollback", (f"all {n} outputs were {only!r} while the previous model saw "
                                f"{', '.join(sorted(base_labels))}")
    if baseline["ok_frames"] >= limits.min_baseline:
        slower = trial["mean_latency_ms"] - baseline["mean_latency_ms"]
        if slower > limits.min_slowdown_ms and trial["mean_latency_ms"] > limits.max_slowdown * baseline["mean_latency_ms"]:
            return "rollback", (f"too slow: {trial['mean_latency_ms']:.1f} ms per frame vs "
                                f"{baseline['mean_latency_ms']:.1f} ms (limit x{limits.max_slowdown:g})")
    return "commit", (f"{frames} frames in {elapsed_s:.0f} s, errors {errors}, defect rate "
                      f"{trial['defect_rate']:.1%}" + (f" (before {base_rate:.1%})" if has_base else "")
                      + (f", agreement {paired['agreement']:.0%} on {paired['n']} parts" if paired["n"] else "")
                      + f", {trial['mean_latency_ms']:.1f} ms/frame")


class ObservedModel:
    """The serving classifier plus a window of its outputs; attribute access falls through to it."""

    def __init__(self, model: Any, window: Window | None = None) -> None:
        self.model = model
        self.window = window or Window()

    _OWN = frozenset({"model", "window", "fallback", "started", "shadow", "shadow_every", "pairs", "_batches", "live"})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # e.g. the set-threshold command assigns `clf.thresholds`: it must reach the real model
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.model, name, value)

    def _record(self, results: Sequence[Any]) -> None:
        self.window.add_many([(r.label, bool(r.is_defect), float(r.latency_ms)) for r in results])

    def classify(self, frame: Any) -> Any:
        return self.classify_batch([frame])[0]

    def classify_batch(self, frames: Sequence[Any]) -> list[Any]:
        results = self.model.classify_batch(frames)
        self._record(results)
        return results


class TrialModel(ObservedModel):
    """The new model on trial, in shadow of the trusted one unless `live` (or nothing is trusted yet)."""

    def __init__(self, model: Any, fallback: Any, *, shadow: Any = None, shadow_every: int = 4,
                 live: bool = True) -> None:
        super().__init__(model)
        self.fallback = fallback
        self.shadow = shadow            # the old model itself (not its observed wrapper: keeps the baseline clean)
        self.shadow_every = max(1, shadow_every)
        self.pairs = Pairs()
        self._batches = itertools.count(1)  # next() is atomic: several inference workers call in
        self.started = time.monotonic()
        self.live = live or shadow is None

    @property
    def mode(self) -> str:
        return "live: its verdicts are booked" if self.live else "in shadow: the trusted model's verdicts are booked"

    def __getattr__(self, name: str) -> Any:
        # model_id/release of what is booked: the trusted model's while the candidate runs in shadow
        serving = self.model if self.__dict__.get("live", True) else self.fallback
        return getattr(serving, name)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name not in self._OWN and not self.__dict__.get("live", True):
            setattr(self.fallback, name, value)  # e.g. set-threshold: the serving model must follow too

    def prepare(self, image: Any) -> Any:
        """The serving model's input for a part (the loop calls it in the camera's thread). A live candidate
        failing on it is a trial error, as in classify_batch: the trusted model prepares the part instead."""
        if not self.live:
            return self.fallback.prepare(image)
        try:
            return self.model.prepare(image)
        except Exception:  # noqa: BLE001 - any failure of an untrusted model is an error to count
            self.window.add_error()
            return self.fallback.prepare(image)

    def classify_batch(self, frames: Sequence[Any]) -> list[Any]:
        if not self.live:
            return self._shadow_batch(frames)
        try:
            results = self.model.classify_batch(frames)
        except Exception:  # noqa: BLE001 - any failure of an untrusted model is an error to count
            for _ in frames:
                self.window.add_error()
            return self.fallback.classify_batch(frames)
        self._record(results)
        if self.shadow is not None and next(self._batches) % self.shadow_every == 0:
            try:
                self.pairs.add(results, self.shadow.classify_batch(frames))
            except Exception:  # noqa: BLE001 - the old model failing is not the new model's fault
                pass
        return results

    def _shadow_batch(self, frames: Sequence[Any]) -> list[Any]:
        served = self.fallback.classify_batch(frames)
        try:
            results = self.model.classify_batch(frames)
        except Exception:  # noqa: BLE001 - the candidate failing costs nothing: the trusted verdicts stand
            for _ in frames:
                self.window.add_error()
            return served
        self._record(results)
        self.pairs.add(results, served)
        return served

    def summary(self) -> dict[str, Any]:
        return {**self.window.summary(), "paired": self.pairs.summary()}


class Pairs:
    """Old and new model on the same parts (every Nth trial batch)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.n = self.agree = self.new_defects = self.old_defects = 0
        self.old_labels: Counter[str] = Counter()

    def add(self, new: Sequence[Any], old: Sequence[Any]) -> None:
        with self._lock:
            for a, b in zip(new, old):
                self.n += 1
                self.agree += a.label == b.label
                self.new_defects += bool(a.is_defect)
                self.old_defects += bool(b.is_defect)
                self.old_labels[b.label] += 1

    def summary(self) -> dict[str, Any]:
        with self._lock:
            n = self.n
            return {"n": n, "agreement": self.agree / n if n else 1.0,
                    "new_defect_rate": self.new_defects / n if n else 0.0,
                    "old_defect_rate": self.old_defects / n if n else 0.0, "old_labels": dict(self.old_labels)}
