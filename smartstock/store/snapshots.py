"""Snapshots kept for learning from the line: why each was saved, the model's scores, the operator's label.

Ids are the inspection's event id (32 hex digits). A label becomes a folder name in `smartstock dataset
export`, so it is checked here, once, for the CLI and the MQTT `label` command alike: a short plain
name, never a path.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any, Sequence

from smartstock.errors import InputError
from smartstock.store.db import Store, insert_rows, utcnow

FOLDER = "snapshots"  # under the state directory
FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.jpg$")
SNAPSHOT_ID = re.compile(r"^[0-9a-f]{32}$")
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
LABELLER = re.compile(r"^[\w .@-]{1,64}$")
_COLUMNS = ("event_id", "ts", "file", "reason", "label", "scores", "model_id", "model_release")


def snapshot_file(folder: Path, name: str) -> Path | None:
    """The file for a snapshot name, or None for anything that is not a plain name of a file in `folder`."""
    if not isinstance(name, str) or not FILE_NAME.match(name):
        return None
    p = Path(folder) / name
    return p if p.is_file() else None


def check_snapshot_id(value: Any) -> str:
    if not isinstance(value, str) or not SNAPSHOT_ID.match(value):
        raise InputError(f"snapshot id must be 32 hex digits (the inspection's event id), got {str(value)[:40]!r}",
                         hint="copy the id from the status page or `smartstock dataset list`")
    return value


def check_label(value: Any) -> str:
    if not isinstance(value, str) or not LABEL.match(value):
        raise InputError(f"label must be 1-32 letters, digits, _ or - (starting with a letter or digit), got "
                         f"{str(value)[:40]!r}", hint="use the class folder name, e.g. ok, scratch, crack")
    return value


def snapshot_row(event_id: str, ts: str, file: str, reason: str, label: str, scores: dict[str, float],
                 model_id: str | None, model_release: int | None) -> tuple:
    return (event_id, ts, file, reason, label, json.dumps({k: round(float(v), 5) for k, v in scores.items()}),
            model_id, model_release)


def insert_snapshots(conn: sqlite3.Connection, rows: Sequence[tuple]) -> None:
    """Inside the inspection's transaction (edge/recorder.py)."""
    insert_rows(conn, "snapshots", _COLUMNS, rows, or_ignore=True)


def label_snapshot(store: Store, snapshot_id: str, label: str, *, by: str = "cli") -> dict[str, Any]:
    """Record the operator's label for one snapshot; an unknown id is an InputError. Labelling again
    replaces the label (the last word counts)."""
    snapshot_id, label = check_snapshot_id(snapshot_id), check_label(label)
    if not LABELLER.match(by):
        raise InputError(f"labeller name {by[:40]!r} is not a plain name")
    with store.transaction() as conn:
        cur = conn.execute("UPDATE snapshots SET operator_label = ?, labelled_at = ?, labelled_by = ? "
                           "WHERE event_id = ?", (label, utcnow(), by, snapshot_id))
        if cur.rowcount == 0:
            raise InputError(f"no snapshot with id {snapshot_id}",
                             hint="the id may be wrong, or the part was not snapshotted")
    row = store.query("SELECT event_id, label, reason, operator_label FROM snapshots WHERE event_id = ?",
                      (snapshot_id,))[0]
    return {"id": row["event_id"], "model_label": row["label"], "reason": row["reason"],
            "label": row["operator_label"]}


def snapshots_since(store: Store, since: str, *, labelled_only: bool = True) -> list[dict[str, Any]]:
    sql = ("SELECT event_id, ts, file, reason, label, scores, operator_label FROM snapshots WHERE ts >= ?"
           + (" AND operator_label IS NOT NULL" if labelled_only else "") + " ORDER BY ts")
    return [{**dict(r), "scores": json.loads(r["scores"])} for r in store.query(sql, (since,))]


def recent_uncertain(conn: sqlite3.Connection, limit: int = 10) -> list[dict[str, Any]]:
    """The latest uncertain parts for the status page (newest first)."""
    rows = conn.execute("SELECT event_id, ts, file, label, scores, operator_label FROM snapshots "
                        "WHERE reason = 'uncertain' ORDER BY ts DESC LIMIT ?", (limit,)).fetchall()
    return [{"id": r[0], "ts": r[1], "snapshot": r[2], "label": r[3], "scores": json.loads(r[4]),
             "operator_label": r[5]} for r in rows]
