"""Watchdog around any FrameSource: reopen with exponential backoff, skip corrupt frames, report status.

No frame for `stall_timeout_s` (or a `SourceLost`, or any other error while reading) -> the source is closed and reopened, waiting
1 s, 2 s, 4 s ... up to `backoff_max_s` between attempts. Status is `ok` while frames flow,
`reconnecting` during the first attempts and `down` once the backoff has reached its maximum.
Every change is logged once, not per frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge.capture.base import CorruptFrame, Frame, FrameSource, SourceError, SourceStatus
from smartstock.redact import redact

logger = logging.getLogger(__name__)


class WatchedSource(FrameSource):
    """Wraps a factory of sources, so a lost device is rebuilt from scratch."""

    def __init__(self, factory: Callable[[], FrameSource], *, name: str, stall_timeout_s: float = 5.0,
                 backoff_min_s: float = 1.0, backoff_max_s: float = 30.0, kind: str = "source",
                 retry_first_open: bool = False) -> None:
        self._factory = factory
        self.name = name
        self.stall_timeout_s = stall_timeout_s
        self.backoff_min_s = min(backoff_min_s, backoff_max_s)
        self.backoff_max_s = backoff_max_s
        self._closed = threading.Event()
        self._inner: FrameSource | None = None
        self._status: SourceStatus = "ok"
        self._backoff = self.backoff_min_s
        self._next_attempt = 0.0
        self.corrupt = 0
        self.reopens = 0
        self.last_error = ""
        self.last_frame_mono = time.monotonic()
        self.kind = kind
        try:
            self._inner = factory()  # fail fast at construction: a wrong file is a config error...
            self.realtime = self._inner.realtime
        except SourceError as e:
            if not retry_first_open:
                raise
            self._lost(str(e))  # ...but a camera that is not up yet is retried in the background

    # -- interface ---------------------------------------------------------------------------
    @property
    def status(self) -> SourceStatus:
        return self._status

    @property
    def ended(self) -> bool:
        return self._inner is not None and self._inner.ended

    def describe(self) -> str:
        return self._inner.describe() if self._inner is not None else self.name

    def seconds_since_frame(self) -> float:
        return time.monotonic() - self.last_frame_mono

    def read(self, timeout: float) -> Frame | None:
        if self._closed.is_set():
            return None
        if self._inner is None and not self._try_open(timeout):
            return None
        inner = self._inner
        if inner is None:  # closed meanwhile
            return None
        try:
            frame = inner.read(timeout)
        except CorruptFrame as e:
            self.corrupt += 1
            if self.corrupt == 1 or self.corrupt % 100 == 0:
                logger.warning("%s: corrupt frame skipped (%d so far): %s", self.name, self.corrupt, e)
            return None
        except SourceError as e:
            self._lost(str(e))
            return None
        except Exception as e:  # noqa: BLE001 - a driver/OpenCV failure (cv2.error...) is a lost device, not a dead camera thread
            self._lost(f"capture failed: {type(e).__name__}: {e}")
            return None
        if frame is None:
            if not inner.ended and self.seconds_since_frame() > self.stall_timeout_s:
                self._lost(f"no frame for {self.stall_timeout_s:g} s")
            return None
        self.last_frame_mono = time.monotonic()
        self._backoff = self.backoff_min_s
        self._set_status("ok", "frames flowing")
        return frame

    def close(self) -> None:
        self._closed.set()
        if self._inner is not None:
            self._inner.close()
            self._inner = None

    # -- reconnecting ------------------------------------------------------------------------
    def _lost(self, reason: str) -> None:
        self.last_error = reason = redact(reason)
        if self._inner is not None:
            try:
                self._inner.close()
            except Exception:  # noqa: BLE001 - a broken device must not stop the reopen
                logger.debug("%s: close failed", self.name, exc_info=True)
            self._inner = None
        self._next_attempt = time.monotonic() + self._backoff
        self._set_status("reconnecting", reason)

    def _try_open(self, timeout: float) -> bool:
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            self._closed.wait(min(wait, timeout))
            if wait > timeout or self._closed.is_set():
                return False
        try:
            self._inner = self._factory()
        except SourceError as e:
            self.last_error = redact(str(e))
            self._backoff = min(self._backoff * 2, self.backoff_max_s)
            self._next_attempt = time.monotonic() + self._backoff
            self._set_status("down" if self._backoff >= self.backoff_max_s else "reconnecting", self.last_error)
            return False
        self.reopens += 1
        self.last_frame_mono = time.monotonic()  # give the reopened source a full stall period
        logger.info("%s: reopened (%d reopen(s) so far)", self.name, self.reopens)
        return True

    def _set_status(self, status: SourceStatus, reason: str) -> None:
        if status != self._status:
            log = logger.info if status == "ok" else logger.warning
            log("%s: camera %s -> %s (%s)", self.name, self._status, status, reason)
            self._status = status
