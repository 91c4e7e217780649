"""Status cost as the history grows: running stock totals vs the old whole-table aggregate, one run.

One store file grows to 10k, 1M and 10M stock movements (10 SKUs, the mix of an inspection line:
produced, 5 % scrapped, some sold and received; 180 days of history at the largest size). At each
size, on the same file and the same read connection:
  - levels(): the running totals (stock_totals, migration 0004) vs the aggregate over every movement
    that levels() ran before (kept here as the baseline);
  - the status read: what the status page reads from the store per request (stock levels, open
    alerts, outbox backlog) in one `store.read()`, with either levels query.
At each size also the one-time cost of migration 0004 on that much history (undone, then applied
by opening the store: backfill of the totals and the index on ts). Then, at the largest size: one
retention batch (`prune()`: the write lock is held for that long). And on fresh stores: the CPU cost
per part of keeping the totals (the insert trigger) in the loop's commit (edge/recorder.py, 64 parts
a transaction), with and without the trigger, interleaved rounds.

The history is built with INSERT ... SELECT over a recursive CTE, 1M rows per statement, with the
trigger dropped (no journal while building); migration 0004 then backfills the totals, and the
store is reopened in WAL for the measurements. Disk: about 2 GB at 10M rows, in a temporary folder
removed at the end (SMARTSTOCK_BENCH_TMP picks the folder). `SMARTSTOCK_BENCH_STORE_SIZES=10000,1000000`
measures fewer sizes.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIZES = (10_000, 1_000_000, 10_000_000)
CHUNK = 1_000_000
HISTORY_DAYS = 180.0  # span of the largest history; retention at 90 days then has half of it to delete
SKUS = 10

# The query levels() ran before migration 0004: every movement, grouped, on every call.
AGGREGATE = "SELECT sku, kind, SUM(quantity) FROM stock_movements GROUP BY sku, kind ORDER BY sku"

_GROW = """
WITH RECURSIVE c(n) AS (SELECT :lo UNION ALL SELECT n + 1 FROM c WHERE n + 1 < :hi)
INSERT INTO stock_movements(ts, sku, kind, quantity, ref)
SELECT strftime('%Y-%m-%dT%H:%M:%fZ', :t0 + n * :step, 'unixepoch'), 'SKU-' || (n % :skus),
       CASE WHEN n % 20 = 0 THEN 'scrapped' WHEN n % 1000 = 7 THEN 'sold' WHEN n % 5000 = 11 THEN 'received'
            ELSE 'produced' END,
       CASE WHEN n % 1000 = 7 THEN 40.0 WHEN n % 5000 = 11 THEN 500.0 ELSE 1.0 END,
       printf('e%010d', n)
FROM c
"""


def _timed(fns: dict[str, Callable[[], Any]], *, min_s: float = 1.0, min_calls: int = 3,
           max_calls: int = 2000) -> dict[str, dict[str, float]]:
    """Median and min per function, calls interleaved (A B B A ...) so load drifts hit both alike;
    one warm-up each; slow calls stop at `min_calls`, fast ones after about `min_s`."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    end = time.perf_counter() + min_s
    while len(times[order[0]]) < min_calls or (time.perf_counter() < end and len(times[order[0]]) < max_calls):
        for k in order:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
        order.reverse()
    return {k: {"calls": len(v), "median_ms": statistics.median(v) * 1e3, "min_ms": min(v) * 1e3}
            for k, v in times.items()}


def _grow(path: Path, have: int, want: int, now: float) -> float:
    """Append movements `have`..`want` without the totals trigger; returns seconds spent."""
    step = HISTORY_DAYS * 86400.0 / SIZES[-1]
    t0 = now - HISTORY_DAYS * 86400.0
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")  # building only: no WAL file as big as the table
        conn.execute("PRAGMA synchronous=OFF")
        trigger = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'stock_totals_add'"
                               ).fetchone()[0]
        start = time.perf_counter()
        conn.execute("BEGIN")
        conn.execute("DROP TRIGGER stock_totals_add")
        for lo in range(have, want, CHUNK):
            conn.execute(_GROW, {"lo": lo, "hi": min(want, lo + CHUNK), "t0": t0, "step": step, "skus": SKUS})
        conn.execute(trigger)
        conn.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()


def _remigrate(path: Path) -> float:
    """Undo migration 0004 and open the store again, which applies it: the one-time cost of the upgrade
    on a device with this much history (backfill of the totals, index on ts). Returns seconds."""
    from smartstock.store import Store

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for stmt in ("DROP TRIGGER stock_totals_add", "DROP TRIGGER stock_movements_append_only",
                     "DROP INDEX stock_movements_ts", "DROP TABLE stock_totals",
                     "DELETE FROM schema_migrations WHERE name = '0004_stock_totals'"):
            conn.execute(stmt)
        conn.execute("COMMIT")
    finally:
        conn.close()
    start = time.perf_counter()
    Store(path).close()
    return time.perf_counter() - start


def _measure(store: Any, rows: int) -> dict[str, Any]:
    from smartstock.store.alerts import open_alerts
    from smartstock.store.stock import levels, levels_from_rows
    from smartstock.sync.outbox import backlog

    with store.read() as conn:
        new, old = levels(conn), levels_from_rows(conn.execute(AGGREGATE))
        same = sorted(new) == sorted(old) and all(
            abs(new[s][k] - old[s][k]) <= 1e-9 * max(1.0, abs(old[s][k])) for s in old for k in old[s])

    def status(levels_fn: Callable[[sqlite3.Connection], Any]) -> Callable[[], Any]:
        def read() -> Any:
            with store.read() as c:
                return levels_fn(c), open_alerts(c), backlog(c)
        return read

    def old_levels(c: sqlite3.Connection) -> Any:
        return levels_from_rows(c.execute(AGGREGATE))

    with store.read() as conn:
        out: dict[str, Any] = {"movements": rows, "totals_equal_aggregate": same}
        lv = _timed({"totals": lambda: levels(conn), "aggregate": lambda: old_levels(conn)})
    st = _timed({"totals": status(levels), "aggregate": status(old_levels)})
    out.update(levels_totals=lv["totals"], levels_aggregate=lv["aggregate"], status_read_totals=st["totals"],
               status_read_aggregate=st["aggregate"])
    out["levels_speedup"] = out["levels_aggregate"]["median_ms"] / out["levels_totals"]["median_ms"]
    out["status_speedup"] = out["status_read_aggregate"]["median_ms"] / out["status_read_totals"]["median_ms"]
    return out


def _trigger_cost(folder: Path, rounds: int = 6, batches: int = 100) -> dict[str, Any]:
    """CPU per part of the loop's commit (edge/recorder.py: inspection, movement and event of 64 parts
    in one transaction), with and without the totals trigger, rounds interleaved."""
    from edge.recorder import InspectedPart, record_parts
    from smartstock.store import Store

    stores = {name: Store(folder / f"{name}.sqlite") for name in ("with_totals", "without_totals")}
    with stores["without_totals"].transaction() as conn:
        conn.execute("DROP TRIGGER stock_totals_add")
    cpu: dict[str, list[float]] = {n: [] for n in stores}
    n = 0
    for r in range(rounds):
        for name in (("with_totals", "without_totals") if r % 2 == 0 else ("without_totals", "with_totals")):
            parts = [[InspectedPart(f"ev-{name}-{n + b * 64 + i}", time.time(), f"SKU-{i % 3}", "ok", 0.97,
                                    i % 20 == 0, 4.2, "defect-cnn", 3, n + b * 64 + i) for i in range(64)]
                     for b in range(batches)]
            n += batches * 64
            t0 = time.process_time()
            for batch in parts:
                record_parts(stores[name], batch, device_id="bench", topic="t/events")
            cpu[name].append((time.process_time() - t0) / (batches * 64) * 1e6)
    for s in stores.values():
        s.close()
    med = {k: statistics.median(v) for k, v in cpu.items()}
    return {"cpu_us_per_part": med, "rounds": rounds, "parts_per_round": batches * 64,
            "extra_cpu_us_per_part": med["with_totals"] - med["without_totals"]}


def main() -> dict[str, Any]:
    from smartstock.store import Store
    from smartstock.store.retention import prune

    sizes = SIZES
    if os.environ.get("SMARTSTOCK_BENCH_STORE_SIZES"):
        sizes = tuple(int(x) for x in os.environ["SMARTSTOCK_BENCH_STORE_SIZES"].split(","))
    folder = Path(tempfile.mkdtemp(prefix="smartstock-bench-store-", dir=os.environ.get("SMARTSTOCK_BENCH_TMP")))
    try:
        path = folder / "smartstock.sqlite"
        Store(path).close()  # schema and migrations
        now = time.time()
        results, have, build_s = [], 0, 0.0
        for size in sizes:
            build_s += _grow(path, have, size, now)
            have = size
            migrate_s = _remigrate(path)
            store = Store(path)
            try:
                r = _measure(store, size)
            finally:
                store.close()
            r["migration_0004_s"] = migrate_s
            r["file_mb"] = path.stat().st_size / 1e6
            results.append(r)
            print(f"{size:>11,} movements ({r['file_mb']:.0f} MB): levels {r['levels_totals']['median_ms']:.3f} ms "
                  f"(totals) vs {r['levels_aggregate']['median_ms']:.1f} ms (aggregate), x{r['levels_speedup']:.0f}; "
                  f"status read {r['status_read_totals']['median_ms']:.3f} vs "
                  f"{r['status_read_aggregate']['median_ms']:.1f} ms; totals equal: {r['totals_equal_aggregate']}; "
                  f"migration 0004 {migrate_s:.1f} s", flush=True)
        store = Store(path)
        try:
            t0 = time.perf_counter()
            got = prune(store, inspections_days=90, movements_days=90, batch_rows=5000, now=now)
            prune_ms = (time.perf_counter() - t0) * 1e3
        finally:
            store.close()
        print(f"retention: one batch deleted {got.movements} movements in {prune_ms:.0f} ms "
              f"(write lock held that long); more to do: {got.more}", flush=True)
        trig = _trigger_cost(folder)
        print(f"keeping the totals: {trig['cpu_us_per_part']['with_totals']:.1f} vs "
              f"{trig['cpu_us_per_part']['without_totals']:.1f} us CPU per part (record_parts, 64 a transaction)",
              flush=True)
        first, last = results[0], results[-1]
        return {"sizes": list(sizes), "build_s": build_s, "results": results,
                "levels_totals_growth": last["levels_totals"]["median_ms"] / first["levels_totals"]["median_ms"],
                "levels_aggregate_growth": last["levels_aggregate"]["median_ms"] / first["levels_aggregate"]["median_ms"],
                "retention_batch": {"rows": got.movements, "ms": prune_ms, "more": got.more},
                "trigger_cost": trig}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
