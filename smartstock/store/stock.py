"""Stock movements and the on-hand figures derived from them.

On hand = produced + received - sold + adjusted (adjusted is signed). Scrapped parts never
entered stock; they are counted for the yield (defect rate) only. Movements are append-only; the
store keeps their running totals per SKU and kind (`levels()`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Literal

from smartstock.store.db import insert_rows, utcnow

MovementKind = Literal["produced", "scrapped", "sold", "received", "adjusted"]
KINDS: tuple[str, ...] = ("produced", "scrapped", "sold", "received", "adjusted")
_INSERT = "INSERT OR IGNORE INTO stock_movements(ts, sku, kind, quantity, ref, note) VALUES (?, ?, ?, ?, ?, ?)"


def book(conn: sqlite3.Connection, sku: str, kind: MovementKind, quantity: float, *, ref: str | None = None,
         ts: str | None = None, note: str | None = None) -> bool:
    """Record one movement inside the caller's transaction. A repeated `ref` is ignored (idempotent);
    returns False then."""
    _check(kind, quantity)
    cur = conn.execute(_INSERT, (ts or utcnow(), sku, kind, float(quantity), ref, note))
    return cur.rowcount == 1


def book_many(conn: sqlite3.Connection, rows: list[tuple[str, MovementKind, float, str | None, str]]) -> None:
    """`book()` for many (sku, kind, quantity, ref, ts) rows in one statement (the inspection loop's
    hot path); the same checks, the same idempotency on `ref`."""
    for _, kind, quantity, _, _ in rows:
        _check(kind, quantity)
    insert_rows(conn, "stock_movements", ("ts", "sku", "kind", "quantity", "ref"),
                [(ts, sku, kind, float(q), ref) for sku, kind, q, ref, ts in rows], or_ignore=True)


def _check(kind: str, quantity: float) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown movement kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind != "adjusted" and quantity < 0:
        raise ValueError(f"{kind} quantity must be >= 0 (use kind 'adjusted' for corrections), got {quantity}")


def levels(conn: sqlite3.Connection, sku: str | None = None) -> dict[str, dict[str, float]]:
    """Per SKU: produced, scrapped, sold, received, adjusted, on_hand, defect_rate.

    Read from the running totals (table stock_totals, kept by a trigger on every inserted movement:
    migration 0004), so the cost does not grow with the history and survives its pruning."""
    sql = "SELECT sku, kind, quantity FROM stock_totals"
    params: tuple = ()
    if sku is not None:
        sql += " WHERE sku = ?"
        params = (sku,)
    return levels_from_rows(conn.execute(sql + " ORDER BY sku", params))


def levels_from_rows(rows: Iterable[tuple[str, str, float]]) -> dict[str, dict[str, float]]:
    """`levels()` from (sku, kind, total quantity) rows in SKU order."""
    out: dict[str, dict[str, float]] = {}
    for s, kind, qty in rows:
        out.setdefault(s, {k: 0.0 for k in KINDS})[kind] = float(qty)
    for row in out.values():
        row["on_hand"] = row["produced"] + row["received"] - row["sold"] + row["adjusted"]
        made = row["produced"] + row["scrapped"]
        row["defect_rate"] = row["scrapped"] / made if made else 0.0
    return out
