"""Draining the outbox to the broker: the bookkeeping of the sync worker, without its thread.

`OutboxDrainer.step()` is called over and over by one thread (edge/sync_worker.py):
- reads rows in id order (prefetched in pages) and publishes them QoS 1 while fewer than
  `inflight` messages are unacknowledged; per-topic order follows from id order;
- maps each paho message id to its row ids; a row is deleted only after its PUBACK, many rows per
  transaction;
- after a reconnect, paho re-sends what was in flight, and the drainer re-reads the outbox from the
  start, skipping rows still in flight, so nothing unacknowledged is ever left behind (duplicates
  possible, loss not);
- rows older than `historical_after_s` when published carry `"historical": true` in the JSON (and,
  on MQTT 5, the user property `historical=true`);
- with `batch_events > 1`, consecutive rows of the inspection event topic go out as one message
  `{"v", "device_id", "ts", "count", "events": [...]}`.
`on_ack()` and `on_reconnect()` may be called from paho's thread; everything else from the worker.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from smartstock.store.db import Store, utcnow
from smartstock.sync import outbox
from smartstock.sync.outbox import OutboxRow
from smartstock.sync.payloads import SCHEMA_VERSION

logger = logging.getLogger(__name__)

# publish(topic, payload, qos, retain, user_properties) -> mid, or None when not accepted now
PublishFn = Callable[[str, bytes, int, bool, "list[tuple[str, str]] | None"], "int | None"]

COUNTER_NAMES = ("published", "published_rows", "acked", "resent", "rejected", "dropped", "historical",
                 "rewinds")


class OutboxDrainer:
    def __init__(self, store: Store, publish: PublishFn, *, device_id: str, inflight: int = 32,
                 batch_topic: str | None = None, batch_events: int = 1, historical_after_s: float = 60.0,
                 prefetch: int = 500, ack_batch: int = 256, ack_delay_s: float = 0.05,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._publish = publish
        self.device_id = device_id
        self.inflight = inflight
        self.batch_topic = batch_topic
        self.batch_events = batch_events
        self.historical_after_s = historical_after_s
        self.prefetch = prefetch
        self.ack_batch = ack_batch
        self.ack_delay_s = ack_delay_s
        self._clock = clock
        self._acks: queue.SimpleQueue[tuple[int, bool, bool]] = queue.SimpleQueue()
        self._mid_rows: dict[int, tuple[int, ...]] = {}
        self._inflight_rows: set[int] = set()
        self._to_delete: list[int] = []
        self._deleting: set[int] = set()
        self._first_delete_at = 0.0
        self._buffer: deque[OutboxRow] = deque()
        self._after_id = 0
        self._rewind = False
        self._last_progress = time.monotonic()
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)

    # -- called from paho's thread -----------------------------------------------------------
    def on_ack(self, mid: int, ok: bool = True, retryable: bool = False) -> None:
        self._acks.put((mid, ok, retryable))

    def on_reconnect(self) -> None:
        """After a reconnect: re-read the outbox from its start (rows in flight are skipped)."""
        self._rewind = True

    # -- worker thread ------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._mid_rows)

    def step(self, connected: bool) -> bool:
        """Process acks, delete acknowledged rows in batches, fill the in-flight window.

        Returns True when there may be more to do right away (the caller then does not sleep)."""
        progressed = self._process_acks()
        self.flush_deletes(force=not connected or not self._mid_rows)
        if self._rewind:
            self._rewind = False
            self._buffer.clear()
            self._after_id = 0
            self.counters["rewinds"] += 1
            self.counters["resent"] += len(self._inflight_rows)  # paho re-sends these itself
        if connected:
            sent = self._fill()
            progressed = progressed or sent > 0
            if self._mid_rows and time.monotonic() - self._last_progress > 120.0:
                logger.warning("sync: %d messages unacknowledged for 2 minutes; sending them again", len(self._mid_rows))
                self._forget_inflight()
        return progressed and connected and len(self._mid_rows) < self.inflight

    def flush_deletes(self, force: bool = False) -> int:
        """Delete acknowledged rows: one transaction per `ack_batch` rows or per `ack_delay_s`."""
        if not self._to_delete:
            return 0
        if not force and len(self._to_delete) < self.ack_batch and \
                time.monotonic() - self._first_delete_at < self.ack_delay_s:
            return 0
        ids, self._to_delete = self._to_delete, []
        try:
            with self.store.transaction() as conn:
                outbox.ack(conn, ids)
        except BaseException:
            self._to_delete = ids + self._to_delete  # acknowledged all the same: delete them next time
            raise
        self._deleting.difference_update(ids)
        self.counters["acked"] += len(ids)
        return len(ids)

    def _process_acks(self) -> bool:
        got = False
        while True:
            try:
                mid, ok, retryable = self._acks.get_nowait()
            except queue.Empty:
                return got
            rows = self._mid_rows.pop(mid, None)
            if rows is None:  # a status/response message, or one forgotten after a stall
                continue
            got = True
            self._last_progress = time.monotonic()
            self._inflight_rows.difference_update(rows)
            if not ok and retryable:
                logger.warning("sync: broker asked to retry %d row(s) later", len(rows))
                self._rewind = True
                continue
            if not ok:
                self.counters["rejected"] += len(rows)
                logger.warning("sync: broker refused %d row(s) (MQTT 5 reason >= 0x80); removed from the outbox",
                               len(rows))
            if not self._to_delete:
                self._first_delete_at = time.monotonic()
            self._to_delete.extend(rows)
            self._deleting.update(rows)

    def _forget_inflight(self) -> None:
        self._mid_rows.clear()
        self._inflight_rows.clear()
        self._rewind = True
        self._last_progress = time.monotonic()

    def _refill(self) -> bool:
        with self.store.read() as conn:
            rows = outbox.pending(conn, self.prefetch, self._after_id)
        if not rows:
            return False
        self._after_id = rows[-1].id
        skip = self._inflight_rows | self._deleting
        self._buffer.extend(r for r in rows if r.id not in skip)
        return True

    def _fill(self) -> int:
        sent = 0
        while len(self._mid_rows) < self.inflight:
            if not self._buffer and not self._refill():
                break
            if not self._buffer:
                continue
            rows = [self._buffer.popleft()]
            if self.batch_events > 1 and rows[0].topic == self.batch_topic:
                while len(rows) < self.batch_events and self._buffer and self._buffer[0].topic == self.batch_topic:
                    rows.append(self._buffer.popleft())
            topic, payload, qos, retain, props = self._message(rows)
            try:
                mid = self._publish(topic, payload, qos, retain, props)
            except ValueError as e:  # a topic/payload MQTT cannot carry: it will never go out
                logger.error("sync: outbox row %d cannot be published (%s); removed", rows[0].id, e)
                self.counters["rejected"] += len(rows)
                self._to_delete.extend(r.id for r in rows)
                self._deleting.update(r.id for r in rows)
                continue
            if mid is None:  # paho did not take it now: keep the rows for the next step
                self._buffer.extendleft(reversed(rows))
                break
            ids = tuple(r.id for r in rows)
            self._mid_rows[mid] = ids
            self._inflight_rows.update(ids)
            self.counters["published"] += 1
            self.counters["published_rows"] += len(rows)
            sent += 1
        return sent

    def _message(self, rows: list[OutboxRow]) -> tuple[str, bytes, int, bool, list[tuple[str, str]] | None]:
        now = self._clock()
        old = [now - r.created_at > self.historical_after_s for r in rows]
        bodies = [outbox.mark_historical(r.payload) if o else r.payload for r, o in zip(rows, old)]
        if any(old):
            self.counters["historical"] += sum(old)
        props = [("historical", "true")] if all(old) else None
        first = rows[0]
        if len(rows) == 1 and not (self.batch_events > 1 and first.topic == self.batch_topic):
            return first.topic, bodies[0], first.qos, first.retain, props
        head = (f'{{"v":{SCHEMA_VERSION},"device_id":"{self.device_id}","ts":"{utcnow()}",'
                f'"count":{len(rows)},"events":[').encode()
        return first.topic, head + b",".join(bodies) + b"]}", first.qos, first.retain, props

    def stats(self) -> dict[str, Any]:
        """Counters plus the backlog, for /metrics, the `{base}/sync` topic and the snapshot command."""
        with self.store.read() as conn:
            b = outbox.backlog(conn)
            age = outbox.oldest_age_s(conn, self._clock())
        return {**self.counters, "in_flight": len(self._mid_rows), "backlog": b["rows"],
                "backlog_bytes": b["bytes"], "oldest_s": round(age, 1)}
