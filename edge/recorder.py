"""Book inspected parts: inspection row + stock movement + outbox event, committed together.

One transaction per batch of parts: each part's three writes are atomic together (a process killed
at any moment leaves either all of them or none), and one fsync per batch rather than per part keeps
the loop close to the bare model's speed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from smartstock.store import Store
from smartstock.store.db import insert_rows, iso_ts
from smartstock.store.snapshots import insert_snapshots, snapshot_row
from smartstock.store.stock import book_many
from smartstock.sync.outbox import PRIORITY_EVENT, enqueue_events
from smartstock.sync.payloads import dumps, event

logger = logging.getLogger(__name__)


@dataclass
class InspectedPart:
    event_id: str
    ts: float              # capture wall time (unix seconds)
    sku: str
    label: str
    score: float
    is_defect: bool
    latency_ms: float
    model_id: str | None
    model_release: int | None
    frame_id: int
    snapshot: str | None = None
    source: str = "cam1"   # the camera that saw the part ([[sources]] id)
    snapshot_reason: str | None = None     # "defect" or "uncertain" when a snapshot was saved
    scores: dict[str, float] | None = None  # every label's score, kept with the snapshot

    @property
    def ts_iso(self) -> str:
        return iso_ts(self.ts)


_INSPECTION_COLUMNS = ("event_id", "ts", "sku", "label", "score", "is_defect", "latency_ms", "model_id",
                       "model_release", "frame_id", "snapshot")


def record_parts(store: Store, parts: Sequence[InspectedPart], *, device_id: str, topic: str) -> None:
    """Commit every part of a batch: inspection, movement (good -> produced, defect -> scrapped), event.
    One multi-row statement per table. (The loop calls this in its writer thread; building the rows in
    the inference workers instead measured worse: 0.81 vs 0.84 of the bare model.)"""
    inspections, movements, events, snaps = [], [], [], []
    for p in parts:
        ts = p.ts_iso
        if p.snapshot:
            snaps.append(snapshot_row(p.event_id, ts, p.snapshot, p.snapshot_reason or "defect", p.label,
                                      p.scores or {p.label: p.score}, p.model_id, p.model_release))
        inspections.append((p.event_id, ts, p.sku, p.label, float(p.score), int(p.is_defect), float(p.latency_ms),
                            p.model_id, p.model_release, p.frame_id, p.snapshot))
        movements.append((p.sku, "scrapped" if p.is_defect else "produced", 1.0, p.event_id, ts))
        events.append(dumps(event(device_id, event_id=p.event_id, ts=ts, sku=p.sku, label=p.label,
                                  score=round(float(p.score), 4), is_defect=p.is_defect,
                                  latency_ms=round(float(p.latency_ms), 2), model_id=p.model_id,
                                  model_release=p.model_release, frame_id=p.frame_id, snapshot=p.snapshot,
                                  source=p.source)))
    with store.transaction() as conn:
        insert_rows(conn, "inspections", _INSPECTION_COLUMNS, inspections)
        book_many(conn, movements)
        enqueue_events(conn, topic, events, priority=PRIORITY_EVENT)
        if snaps:
            insert_snapshots(conn, snaps)


def recent_inspections(store: Store, limit: int = 20) -> list[dict]:
    rows = store.query("SELECT event_id, ts, sku, label, score, is_defect, latency_ms, model_id, model_release, "
                       "snapshot FROM inspections ORDER BY id DESC LIMIT ?", (limit,))
    return [{**dict(r), "is_defect": bool(r["is_defect"])} for r in rows]
