"""The store-and-forward outbox: nothing reaches MQTT except through these rows.

`enqueue()` is called inside the caller's transaction, so an inspection, its stock movement and
its event are committed together or not at all. The sync worker reads rows in id order
(`pending()`), publishes them QoS 1 and deletes each only when the broker acknowledges it (`ack()`).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from smartstock.sync.payloads import dumps

PRIORITY_TELEMETRY = 0  # dropped first when the outbox is over its cap
PRIORITY_STATE = 1
PRIORITY_EVENT = 2      # dropped last


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    priority: int
    created_at: float


def enqueue(conn: sqlite3.Connection, topic: str, payload: dict[str, Any] | bytes | str, *, retain: bool = False,
            qos: int = 1, priority: int = PRIORITY_EVENT) -> int:
    """Add one message to the outbox within the caller's transaction; returns the row id."""
    body = dumps(payload) if isinstance(payload, dict) else payload.encode() if isinstance(payload, str) else payload
    cur = conn.execute(
        "INSERT INTO outbox(topic, payload, qos, retain, priority, created_at, size) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (topic, body, qos, int(retain), priority, time.time(), len(body)))
    return int(cur.lastrowid)


def pending(conn: sqlite3.Connection, limit: int, after_id: int = 0) -> list[OutboxRow]:
    """The oldest rows not yet acknowledged, in id order (which keeps order per topic)."""
    rows = conn.execute("SELECT id, topic, payload, qos, retain, priority, created_at FROM outbox "
                        "WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
    return [OutboxRow(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5], r[6]) for r in rows]


def ack(conn: sqlite3.Connection, ids: list[int]) -> None:
    """Delete rows the broker acknowledged."""
    conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])


def backlog(conn: sqlite3.Connection) -> dict[str, int]:
    rows, size = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
    return {"rows": int(rows), "bytes": int(size)}
