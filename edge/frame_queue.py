"""The bounded frame queue between the capture thread and the inference workers.

Built for this one job instead of `queue.Queue`, because per-frame hand-overs were the loop's
largest cost: with the queue full, every frame a worker took woke the capture thread for one put,
a context switch and a GIL hand-over that the model's threads paid for (in the benchmark,
capture + queue alone took a quarter of the bare model's throughput). Here:
  * a worker takes a whole batch under one lock;
  * a replay's capture thread (which waits rather than drop parts) sleeps until the queue has
    drained to half, then refills it in one go;
  * a live source never waits: a full queue drops its oldest frame (the newest part is in view);
  * several cameras share one queue ([[sources]]): each put carries its camera, and a drained
    queue wakes every waiting replay, so no camera is starved by another.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FrameQueue(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.refill_at = maxsize // 2          # a waiting producer resumes at or below this depth
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._drained = threading.Condition(self._lock)
        self._closed = False

    def qsize(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put_drop_oldest(self, item: T) -> bool:
        """Add without ever waiting; returns True when the oldest item was dropped to make room."""
        return bool(self.push_drop_oldest(item))

    def push_drop_oldest(self, item: T) -> list[T]:
        """As put_drop_oldest, returning the item dropped (empty list when none): with several
        cameras on one queue, the drop is counted against the camera whose part it was."""
        with self._lock:
            dropped = [self._items.popleft()] if len(self._items) >= self.maxsize else []
            self._items.append(item)
            self._not_empty.notify()
        return dropped

    def put_wait(self, item: T, timeout: float) -> bool:
        """Add, waiting while the queue is full (until it has drained to `refill_at`); False on timeout."""
        with self._lock:
            if len(self._items) >= self.maxsize:
                self._drained.wait_for(lambda: len(self._items) <= self.refill_at, timeout)
                if len(self._items) >= self.maxsize:
                    return False
            self._items.append(item)
            self._not_empty.notify()
        return True

    def take(self, max_items: int, timeout: float, fill_wait_s: float = 0.0) -> list[T]:
        """Up to `max_items` of the oldest items; waits up to `timeout` for the first one unless closed.
        `fill_wait_s`: once one item is there, wait up to this long for the batch to fill (a GPU runs a
        full batch for about the cost of one; on a CPU it only adds latency, so the default is 0)."""
        with self._lock:
            if not self._items and not self._closed:
                self._not_empty.wait(timeout)
            if fill_wait_s > 0 and self._items and len(self._items) < max_items and not self._closed:
                deadline = time.monotonic() + fill_wait_s
                while len(self._items) < max_items and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._not_empty.wait(left)
            n = min(max_items, len(self._items))
            out = [self._items.popleft() for _ in range(n)]
            if out and len(self._items) <= self.refill_at:
                self._drained.notify_all()  # every waiting camera: one woken alone refills the queue and starves the rest
        return out

    def close(self) -> None:
        """No more items will come: waiting takers return at once (with what is left, if anything)."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()

    def clear(self) -> int:
        """Drop everything still queued; returns how many items that was."""
        with self._lock:
            n = len(self._items)
            self._items.clear()
            self._drained.notify_all()
        return n
