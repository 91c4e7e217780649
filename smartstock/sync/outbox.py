"""The store-and-forward outbox: nothing reaches MQTT except through these rows.

`enqueue()` is called inside the caller's transaction, so an inspection, its stock movement and
its event are committed together or not at all. The sync worker reads rows in id order
(`pending()`), publishes them QoS 1 and deletes each only when the broker acknowledges it (`ack()`).

Cap policy (`enforce_caps()`), applied by the sync worker every few seconds:
  1. telemetry (priority 0) older than the age cap is dropped;
  2. while the outbox is over its row or byte cap, the oldest telemetry goes first, then the oldest
     state (priority 1), and only then the oldest events (priority 2).
Retained state is coalesced at enqueue: a newer row for the same topic replaces the unsent older one.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from smartstock.store.db import insert_rows
from smartstock.sync.payloads import dumps

PRIORITY_TELEMETRY = 0  # dropped first when the outbox is over its cap
PRIORITY_STATE = 1
PRIORITY_EVENT = 2      # dropped last
PRIORITY_NAMES = {PRIORITY_TELEMETRY: "telemetry", PRIORITY_STATE: "state", PRIORITY_EVENT: "event"}

_HISTORICAL_KEY = b'"historical"'


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
            qos: int = 1, priority: int = PRIORITY_EVENT, coalesce: bool | None = None) -> int:
    """Add one message to the outbox within the caller's transaction; returns the row id.

    `coalesce` (default: `retain`) replaces unsent older rows of the same topic: only the latest
    retained state matters to a dashboard, so an outage does not pile up thousands of them.
    """
    body = dumps(payload) if isinstance(payload, dict) else payload.encode() if isinstance(payload, str) else payload
    key = topic if (retain if coalesce is None else coalesce) else None
    if key is not None:
        conn.execute("DELETE FROM outbox WHERE coalesce_key = ?", (key,))
    cur = conn.execute(
        "INSERT INTO outbox(topic, payload, qos, retain, priority, created_at, size, coalesce_key) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (topic, body, qos, int(retain), priority, time.time(), len(body), key))
    return int(cur.lastrowid)


def enqueue_events(conn: sqlite3.Connection, topic: str, payloads: list[bytes], *, qos: int = 1,
                   priority: int = PRIORITY_EVENT) -> None:
    """`enqueue()` for many already-serialised, non-retained events in one statement (hot path)."""
    now = time.time()
    insert_rows(conn, "outbox", ("topic", "payload", "qos", "retain", "priority", "created_at", "size"),
                [(topic, b, qos, 0, priority, now, len(b)) for b in payloads])


def pending(conn: sqlite3.Connection, limit: int, after_id: int = 0) -> list[OutboxRow]:
    """The oldest rows not yet acknowledged, in id order (which keeps order per topic).
    Outside a transaction, read them with `with store.read() as conn:` (never blocks the writers)."""
    rows = conn.execute("SELECT id, topic, payload, qos, retain, priority, created_at FROM outbox "
                        "WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
    return [OutboxRow(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5], r[6]) for r in rows]


def ack(conn: sqlite3.Connection, ids: list[int]) -> None:
    """Delete rows the broker acknowledged (many per statement: one commit covers a whole batch)."""
    ids = list(ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        conn.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(chunk))})", chunk)


def backlog(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows and payload bytes waiting in the outbox."""
    rows, size = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
    return {"rows": int(rows), "bytes": int(size)}


def oldest_age_s(conn: sqlite3.Connection, now: float | None = None) -> float:
    """Age of the oldest unsent row in seconds (0 when empty): how far behind the dashboards are."""
    row = conn.execute("SELECT created_at FROM outbox ORDER BY id LIMIT 1").fetchone()
    return max(0.0, (now or time.time()) - row[0]) if row else 0.0


def enforce_caps(conn: sqlite3.Connection, *, max_rows: int, max_bytes: int, max_age_s: float,
                 now: float | None = None) -> dict[str, int]:
    """Apply the cap policy of the module docstring in the caller's transaction.

    Returns the rows dropped per priority name (only non-zero entries)."""
    now = time.time() if now is None else now
    dropped: dict[str, int] = {}

    def note(priority: int, n: int) -> None:
        if n:
            name = PRIORITY_NAMES.get(priority, str(priority))
            dropped[name] = dropped.get(name, 0) + n

    cur = conn.execute("DELETE FROM outbox WHERE priority = ? AND created_at < ?",
                       (PRIORITY_TELEMETRY, now - max_age_s))
    note(PRIORITY_TELEMETRY, cur.rowcount)

    # cheap bound first (primary key and size index): far below both caps -> no full count
    # (one aggregate per statement: SQLite answers MIN/MAX from an index only when alone)
    lo = conn.execute("SELECT MIN(id) FROM outbox").fetchone()[0]
    hi = conn.execute("SELECT MAX(id) FROM outbox").fetchone()[0]
    biggest = conn.execute("SELECT MAX(size) FROM outbox").fetchone()[0]
    upper = 0 if hi is None else hi - lo + 1
    if upper <= max_rows and upper * (biggest or 0) <= max_bytes:
        return dropped
    rows, size = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
    excess_rows, excess_bytes = rows - max_rows, size - max_bytes
    for priority in (PRIORITY_TELEMETRY, PRIORITY_STATE, PRIORITY_EVENT):
        if excess_rows <= 0 and excess_bytes <= 0:
            break
        while excess_rows > 0 or excess_bytes > 0:
            batch = conn.execute("SELECT id, size FROM outbox WHERE priority = ? ORDER BY id LIMIT 2000",
                                 (priority,)).fetchall()
            if not batch:
                break
            victims = []
            for row_id, row_size in batch:
                if excess_rows <= 0 and excess_bytes <= 0:
                    break
                victims.append(row_id)
                excess_rows -= 1
                excess_bytes -= row_size
            ack(conn, victims)
            note(priority, len(victims))
    return dropped


def mark_historical(payload: bytes) -> bytes:
    """Add `"historical":true` to a JSON object payload without parsing it (cheap on replay).

    Other payloads (non-JSON, already marked) are returned unchanged."""
    if payload[:1] == b"{" and payload[1:2] != b"}" and _HISTORICAL_KEY not in payload:
        return b'{"historical":true,' + payload[1:]
    return payload
