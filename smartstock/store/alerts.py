"""Alerts table: at most one open alert per key; a rule that stops firing closes its alert.

`sync_alerts(conn, active, kinds)` is called with every alert a rule set currently wants open; for
the kinds it covers, it opens the new ones, refreshes the still-open ones and closes the rest. Other
kinds (e.g. the OTA agent's `model_rolled_back`) are left alone.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from smartstock.store.db import utcnow


@dataclass(frozen=True)
class Alert:
    """One alert a rule wants open; `key` identifies it (one open alert per key, e.g. `low_stock:PCB-100`)."""

    key: str
    kind: str
    message: str
    severity: str = "warning"
    sku: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sync_alerts(conn: sqlite3.Connection, active: Iterable[Alert], kinds: Iterable[str]) -> tuple[list[str], list[str]]:
    """Make the open alerts of `kinds` equal to `active`; returns (opened keys, closed keys)."""
    kinds = set(kinds)
    now = utcnow()
    want = {a.key: a for a in active if a.kind in kinds}
    marks = ",".join("?" * len(kinds)) or "''"
    open_rows = {r[0]: r[1] for r in conn.execute(
        f"SELECT key, id FROM alerts WHERE closed_at IS NULL AND kind IN ({marks})", tuple(kinds))}
    opened, closed = [], []
    for key, a in want.items():
        if key in open_rows:
            conn.execute("UPDATE alerts SET message = ?, severity = ?, data_json = ?, updated_at = ? WHERE id = ?",
                         (a.message, a.severity, json.dumps(a.data, default=str), now, open_rows[key]))
        else:
            conn.execute("INSERT INTO alerts(key, kind, sku, severity, message, data_json, opened_at, updated_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (key, a.kind, a.sku, a.severity, a.message, json.dumps(a.data, default=str), now, now))
            opened.append(key)
    for key, row_id in open_rows.items():
        if key not in want:
            conn.execute("UPDATE alerts SET closed_at = ?, updated_at = ? WHERE id = ?", (now, now, row_id))
            closed.append(key)
    return opened, closed


def raise_alert(conn: sqlite3.Connection, alert: Alert) -> bool:
    """Open (or refresh) one alert without touching others; True if it was newly opened."""
    row = conn.execute("SELECT id FROM alerts WHERE key = ? AND closed_at IS NULL", (alert.key,)).fetchone()
    now = utcnow()
    if row:
        conn.execute("UPDATE alerts SET message = ?, severity = ?, data_json = ?, updated_at = ? WHERE id = ?",
                     (alert.message, alert.severity, json.dumps(alert.data, default=str), now, row[0]))
        return False
    conn.execute("INSERT INTO alerts(key, kind, sku, severity, message, data_json, opened_at, updated_at) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (alert.key, alert.kind, alert.sku, alert.severity, alert.message,
                  json.dumps(alert.data, default=str), now, now))
    return True


def close_alert(conn: sqlite3.Connection, key: str) -> bool:
    """Close the open alert with this key; True if there was one."""
    now = utcnow()
    cur = conn.execute("UPDATE alerts SET closed_at = ?, updated_at = ? WHERE key = ? AND closed_at IS NULL",
                       (now, now, key))
    return cur.rowcount > 0


def open_alerts(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT key, kind, sku, severity, message, data_json, opened_at, updated_at FROM alerts "
                        "WHERE closed_at IS NULL ORDER BY opened_at, id").fetchall()
    return [{"key": r[0], "kind": r[1], "sku": r[2], "severity": r[3], "message": r[4],
             "data": json.loads(r[5]) if r[5] else {}, "opened_at": r[6], "updated_at": r[7]} for r in rows]
