"""Sales history in the store: idempotent inserts, chunked imports, daily series for forecasting.

Idempotency: each row gets a natural key = hash(sku, date, quantity, price, n) where n counts the
identical rows before it in the same file. Re-importing the same export, or an overlapping one, adds
nothing, while two genuinely identical sales on one day in one file are both kept.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from smartstock.ingest import RowError, SalesRow
from smartstock.store.db import Store, utcnow

logger = logging.getLogger(__name__)

CHUNK_ROWS = 5000
_SEEN = "sales_import_seen"  # TEMP table: occurrence counts of identical rows within the current import


def _identity(sku: str, date: dt.date | str, quantity: float, price: float | None) -> str:
    return f"{sku}\x1f{date}\x1f{float(quantity)!r}\x1f{'' if price is None else repr(float(price))}"


def sale_key(sku: str, date: dt.date | str, quantity: float, price: float | None, occurrence: int = 0) -> str:
    """Natural key of a sale; `occurrence` = how many identical rows came before it in the same file."""
    text = f"{_identity(sku, date, quantity, price)}\x1f{occurrence}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


SALE_REF_PREFIX = "sale:"  # ref of the `sold` movement booked for a sale (retention keeps these movements)


@dataclass(frozen=True)
class Sale:
    """One sale to store; `key` makes the insert idempotent (see `sale_key`)."""

    sku: str
    date: dt.date
    quantity: float
    price: float | None
    key: str


def insert_sales(conn: sqlite3.Connection, sales: Iterable[Sale], *, source: str | None = None,
                 book_stock: bool = False) -> int:
    """Insert inside the caller's transaction; rows whose key is already stored are skipped.

    With `book_stock` each sale is also booked as a `sold` movement (ref `sale:<key>`, idempotent too).
    Returns the number of new sales rows.
    """
    sales = list(sales)
    now = utcnow()
    before = conn.total_changes
    conn.executemany("INSERT OR IGNORE INTO sales(sku, date, quantity, price, source, natural_key, imported_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [(s.sku, s.date.isoformat(), s.quantity, s.price, source, s.key, now) for s in sales])
    added = conn.total_changes - before
    if book_stock:
        conn.executemany("INSERT OR IGNORE INTO stock_movements(ts, sku, kind, quantity, ref, note) "
                         "VALUES (?, ?, 'sold', ?, ?, ?)",
                         [(f"{s.date.isoformat()}T00:00:00.000Z", s.sku, s.quantity, f"{SALE_REF_PREFIX}{s.key}", source)
                          for s in sales])
    return added


@dataclass
class ImportSummary:
    """What an import did. read = records seen (valid + rejected), stored = new rows."""

    read: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    chunks: int = 0
    errors: list[RowError] = field(default_factory=list)  # the first `keep_errors` only

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["errors"] = [{"line": e.line, "reason": e.reason} for e in self.errors]
        return out


def import_sales(store: Store, records: Iterable[SalesRow | RowError], *, source: str | None = None,
                 book_stock: bool = False, chunk_rows: int = CHUNK_ROWS, keep_errors: int = 1000,
                 on_error: Callable[[RowError], None] | None = None) -> ImportSummary:
    """Store valid rows in transactions of `chunk_rows`, so memory stays bounded and a killed import
    keeps what it committed (re-running it then adds only the rest). Rejected rows go to `on_error`.
    """
    summary = ImportSummary()
    with store.transaction() as conn:
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_SEEN} (k INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        conn.execute(f"DELETE FROM temp.{_SEEN}")
    chunk: list[SalesRow] = []

    def flush() -> None:
        if not chunk:
            return
        with store.transaction() as conn:
            added = insert_sales(conn, _keyed(conn, chunk), source=source, book_stock=book_stock)
        summary.stored += added
        summary.duplicates += len(chunk) - added
        summary.chunks += 1
        logger.debug("sales import: chunk %d committed (%d rows, %d new)", summary.chunks, len(chunk), added)
        chunk.clear()

    try:
        for rec in records:
            summary.read += 1
            if isinstance(rec, RowError):
                summary.rejected += 1
                if len(summary.errors) < keep_errors:
                    summary.errors.append(rec)
                if on_error is not None:
                    on_error(rec)
                continue
            chunk.append(rec)
            if len(chunk) >= chunk_rows:
                flush()
        flush()
    finally:
        with store.transaction() as conn:
            conn.execute(f"DROP TABLE IF EXISTS temp.{_SEEN}")
    logger.info("sales import: %d read, %d stored, %d duplicates, %d rejected", summary.read, summary.stored,
                summary.duplicates, summary.rejected)
    return summary


def _keyed(conn: sqlite3.Connection, rows: Sequence[SalesRow]) -> list[Sale]:
    """Sales with natural keys; occurrence counts carry over between chunks in the TEMP table."""
    idents = [_identity(r.sku, r.date, r.quantity, r.price).encode("utf-8", "surrogatepass") for r in rows]
    ks = [int.from_bytes(hashlib.blake2b(i, digest_size=8).digest(), "big", signed=True) for i in idents]
    seen: dict[int, int] = {}
    distinct = list(dict.fromkeys(ks))
    for i in range(0, len(distinct), 500):
        part = distinct[i:i + 500]
        q = f"SELECT k, n FROM temp.{_SEEN} WHERE k IN ({','.join('?' * len(part))})"
        seen.update(conn.execute(q, part).fetchall())
    out = []
    for r, ident, k in zip(rows, idents, ks):
        n = seen.get(k, 0)
        seen[k] = n + 1
        key = hashlib.sha256(ident + b"\x1f%d" % n).hexdigest()[:32]  # == sale_key(r..., n)
        out.append(Sale(r.sku, r.date, r.quantity, r.price, key))
    conn.executemany(f"INSERT INTO temp.{_SEEN}(k, n) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET n = excluded.n",
                     [(k, seen[k]) for k in distinct])
    return out


# -- queries ------------------------------------------------------------------------------------
def sales_series(conn: sqlite3.Connection, sku: str, *, start: dt.date | None = None,
                 end: dt.date | None = None) -> list[tuple[dt.date, float]]:
    """Daily quantity sold of one SKU, oldest first; days without sales are absent (not 0)."""
    sql, params = "SELECT date, SUM(quantity) FROM sales WHERE sku = ?", [sku]
    if start is not None:
        sql += " AND date >= ?"
        params.append(start.isoformat())
    if end is not None:
        sql += " AND date <= ?"
        params.append(end.isoformat())
    rows = conn.execute(sql + " GROUP BY date ORDER BY date", params).fetchall()
    return [(dt.date.fromisoformat(d), float(q)) for d, q in rows]


def skus_with_sales(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT sku FROM sales ORDER BY sku")]


def sales_summary(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Per SKU: rows, total_quantity, first_date, last_date."""
    rows = conn.execute("SELECT sku, COUNT(*), SUM(quantity), MIN(date), MAX(date) FROM sales GROUP BY sku ORDER BY sku")
    # None for a sum that overflowed: rows stored before quantities were bounded (ingest.MAX_QUANTITY)
    # must not make `sales summary --json` print Infinity, which is not JSON
    return {sku: {"rows": n, "total_quantity": float(total) if math.isfinite(total) else None, "first_date": first,
                  "last_date": last}
            for sku, n, total, first, last in rows}


def sale_days(conn: sqlite3.Connection) -> list[dt.date]:
    """Every day on which any SKU sold something, oldest first (the input of data-gap detection)."""
    return [dt.date.fromisoformat(r[0]) for r in conn.execute("SELECT DISTINCT date FROM sales ORDER BY date")]


def last_sale(conn: sqlite3.Connection, sku: str) -> dt.date | None:
    """The newest sale date of one SKU (None without sales)."""
    row = conn.execute("SELECT MAX(date) FROM sales WHERE sku = ?", (sku,)).fetchone()
    return dt.date.fromisoformat(row[0]) if row and row[0] else None
