"""The FrameSource interface every capture kind implements, and the errors sources raise.

A source yields `Frame`s; `read(timeout)` returns None when no frame arrived in time (or a finite
replay has `ended`). A source that loses its device raises `SourceLost`; the watchdog
(`edge.capture.watchdog.WatchedSource`) catches it and reopens with backoff, so the plugins stay
simple: open in the constructor (fail fast), read, close.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from smartstock.errors import SmartStockError

SourceStatus = Literal["ok", "reconnecting", "down"]


class SourceError(SmartStockError):
    """A source cannot be opened (wrong uri, missing file, OpenCV built without a backend)."""

    exit_code = 2


class SourceLost(SourceError):
    """An open source stopped delivering (device unplugged, stream closed, folder removed)."""


class CorruptFrame(Exception):
    """One frame could not be decoded; the watchdog counts it and carries on."""


@dataclass
class Frame:
    """One captured image (BGR, HxWx3 uint8) with where and when it was taken."""

    image: np.ndarray
    index: int                                   # sequence number within the source
    ts: float = field(default_factory=time.time)  # wall clock, for records
    t_mono: float = field(default_factory=time.monotonic)  # for frame-to-result latency
    name: str = ""                               # file name for replays, else ""


class FrameSource(ABC):
    """What the inspection loop reads from. `status` is ok / reconnecting / down."""

    kind: ClassVar[str] = "abstract"
    #: True for a live camera or stream (frames are lost if not taken in time); False for a
    #: replay at full speed, which the loop may pace instead of dropping frames.
    realtime: bool = True

    @abstractmethod
    def read(self, timeout: float) -> Frame | None:
        """The next frame, or None if none arrived within `timeout` seconds."""

    @abstractmethod
    def close(self) -> None:
        """Release the device; idempotent."""

    @property
    def status(self) -> SourceStatus:
        return "ok"

    @property
    def ended(self) -> bool:
        """True once a finite replay (file, folder without loop) has delivered its last frame."""
        return False

    def describe(self) -> str:
        return self.kind

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReplayPacer:
    """Paces a file or folder replay to `fps` (0 = as fast as possible), sleeping only on the
    source's close event so `close()` interrupts the wait."""

    def __init__(self, fps: float, closed: threading.Event) -> None:
        self.fps = fps
        self._closed = closed
        self._next_due = time.monotonic()

    def wait(self, timeout: float) -> bool:
        """True when the next frame is due; False when it is not due within `timeout` or the source closed."""
        if self.fps <= 0:
            return True
        delay = self._next_due - time.monotonic()
        if delay > timeout:
            self._closed.wait(timeout)
            return False
        if delay > 0 and self._closed.wait(delay):
            return False
        # Never fall more than a second behind: a stalled consumer must not trigger a burst of catch-up frames.
        self._next_due = max(self._next_due + 1.0 / self.fps, time.monotonic() - 1.0)
        return True
