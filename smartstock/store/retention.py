"""Retention: delete per-part history (inspections, stock movements) older than N days.

Deleted oldest first, `batch_rows` rows per table per call, each table in its own short write
transaction, so a device catching up on months of history never holds the inspection writer for
long; the caller (the service's refresh loop) calls again while `more` is set.

Never deleted here: the running stock totals (stock_totals: on hand and the defect rate stay those
of the whole history), sales, the outbox (unsent rows follow the sync caps alone) and the movements
booked for sales (ref `sale:...`): those keep re-importing the same sales file idempotent for as
long as the sales history is kept. Any other movement's `ref` deduplicates only while the movement
is kept.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from smartstock.store.db import Store, iso_ts
from smartstock.store.sales import SALE_REF_PREFIX

logger = logging.getLogger(__name__)

# (table, the rows it may delete): both use an index on ts (migrations 0001 and 0004), oldest first
_PRUNABLE = {
    "inspections": "SELECT id FROM inspections WHERE ts < :cutoff ORDER BY ts LIMIT :n",
    "stock_movements": "SELECT id FROM stock_movements WHERE ts < :cutoff "
                       "AND (ref IS NULL OR substr(ref, 1, :plen) <> :prefix) ORDER BY ts LIMIT :n",
}


@dataclass(frozen=True)
class Pruned:
    """Rows deleted by one `prune()` call; `more` = a table had a full batch (call again soon)."""

    inspections: int = 0
    movements: int = 0
    more: bool = False


def cutoff(days: float, now: float) -> str:
    """The ISO-8601 UTC time `days` before `now`, in the format the store writes its `ts` columns."""
    return iso_ts(now - days * 86400.0)


def prune(store: Store, *, inspections_days: float, movements_days: float, batch_rows: int,
          now: float | None = None) -> Pruned:
    """Delete up to `batch_rows` expired rows from each table (a day count of 0 keeps that table)."""
    now = time.time() if now is None else now
    got: dict[str, int] = {}
    for table, days in (("inspections", inspections_days), ("stock_movements", movements_days)):
        if days <= 0:
            got[table] = 0
            continue
        params = {"cutoff": cutoff(days, now), "n": batch_rows, "plen": len(SALE_REF_PREFIX),
                  "prefix": SALE_REF_PREFIX}
        with store.transaction() as conn:
            got[table] = conn.execute(f"DELETE FROM {table} WHERE id IN ({_PRUNABLE[table]})", params).rowcount
    out = Pruned(got["inspections"], got["stock_movements"],
                 more=got["inspections"] >= batch_rows or got["stock_movements"] >= batch_rows)
    if out.inspections or out.movements:
        logger.debug("retention: deleted %d inspection(s), %d movement(s)", out.inspections, out.movements)
    return out
