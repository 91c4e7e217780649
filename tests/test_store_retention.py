"""Retention: old inspections and movements go in batches; totals, sales movements and the outbox stay."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from smartstock.config import Config, parse_config
from smartstock.errors import ConfigError
from smartstock.store.retention import cutoff, prune
from smartstock.store.sales import Sale, insert_sales
from smartstock.store.stock import book, book_many, levels
from smartstock.sync.outbox import enqueue, enqueue_events, pending

NOW = time.time()


def iso(days_ago: float, i: int = 0) -> str:
    return cutoff(days_ago, NOW - i * 0.001)  # i ms apart, oldest last


def fill(store, old: int = 250, recent: int = 40) -> None:
    """`old` parts from 200 days ago and `recent` from yesterday, as the recorder books them, plus a
    manual receipt, an old sale booked as stock and three unsent outbox rows (one of them 200 days old)."""
    with store.transaction() as conn:
        for days, n, tag in ((200, old, "o"), (1, recent, "r")):
            conn.executemany("INSERT INTO inspections(event_id, ts, sku, label, score, is_defect) VALUES (?, ?, ?, ?, 1, ?)",
                             [(f"{tag}{i}", iso(days, i), "A", "ok", int(i % 10 == 0)) for i in range(n)])
            book_many(conn, [("A", "scrapped" if i % 10 == 0 else "produced", 1.0, f"{tag}{i}", iso(days, i))
                             for i in range(n)])
        book(conn, "A", "received", 500.0, ref="PO-1", ts=iso(300))
        insert_sales(conn, [Sale("A", dt.date.fromisoformat(iso(400)[:10]), 30.0, None, "k1")], book_stock=True)
        enqueue_events(conn, "t/events", [b'{"i":1}', b'{"i":2}'])
        enqueue(conn, "t/state", {"s": 1}, retain=True)
        conn.execute("UPDATE outbox SET created_at = ? WHERE id = (SELECT MIN(id) FROM outbox)", (NOW - 200 * 86400,))


def counts(store) -> tuple[int, int]:
    with store.read() as conn:
        return (conn.execute("SELECT COUNT(*) FROM inspections").fetchone()[0],
                conn.execute("SELECT COUNT(*) FROM stock_movements").fetchone()[0])


def test_prune_deletes_old_rows_in_batches_and_keeps_totals_sales_and_outbox(store):
    fill(store)
    with store.read() as conn:
        before, outbox_before = levels(conn), pending(conn, 100)
    assert counts(store) == (290, 292)
    calls = []
    while True:
        got = prune(store, inspections_days=90, movements_days=90, batch_rows=60, now=NOW)
        calls.append(got)
        assert got.inspections <= 60 and got.movements <= 60
        if not got.more:
            break
    assert len(calls) == 5  # 250 old parts at 60 a batch
    assert sum(c.inspections for c in calls) == 250
    assert sum(c.movements for c in calls) == 251  # the old parts and the old manual receipt
    with store.read() as conn:
        assert {r[0] for r in conn.execute("SELECT event_id FROM inspections")} == {f"r{i}" for i in range(40)}
        left = conn.execute("SELECT ref FROM stock_movements WHERE ref NOT LIKE 'r%'").fetchall()
        assert [r[0] for r in left] == ["sale:k1"]  # kept: it keeps the re-import idempotent
        assert levels(conn) == before  # on hand and defect rate are those of the whole history
        assert pending(conn, 100) == outbox_before  # unsent rows are not retention's business
    with store.transaction() as conn:  # re-importing the old sale books nothing twice
        insert_sales(conn, [Sale("A", dt.date.fromisoformat(iso(400)[:10]), 30.0, None, "k1")], book_stock=True)
    with store.read() as conn:
        assert levels(conn) == before
    assert prune(store, inspections_days=90, movements_days=90, batch_rows=60, now=NOW) == \
        type(calls[0])(0, 0, False)


def test_zero_days_keeps_that_table(store):
    fill(store, old=30, recent=5)
    got = prune(store, inspections_days=0, movements_days=250, batch_rows=1000, now=NOW)
    assert (got.inspections, got.movements, got.more) == (0, 1, False)  # only the 300-day receipt
    assert counts(store) == (35, 36)
    got = prune(store, inspections_days=150, movements_days=0, batch_rows=1000, now=NOW)
    assert (got.inspections, got.movements) == (30, 0)


def test_refresh_loop_prunes_with_the_configured_policy(store):
    from edge.refresh import Refresher
    from smartstock.sync.topics import Topics

    config = Config.model_validate({"retention": {"inspections_days": 30, "movements_days": 30, "batch_rows": 100}})
    fill(store, old=150, recent=10)
    ref = Refresher(store, config, Topics.from_config(config.mqtt, config.device), status=lambda: {},
                    camera=lambda: [], stop_event=threading.Event())
    assert ref.prune_history(now=NOW).more  # 150 old parts: one batch of 100, more to come
    assert not ref.prune_history(now=NOW).more
    assert ref.pruned == {"inspections": 150, "movements": 151}
    assert counts(store) == (10, 11)


@pytest.mark.parametrize("key, value", [("inspections_days", -1), ("batch_rows", 10), ("keep", 3)])
def test_retention_config_is_validated(key, value):
    with pytest.raises(ConfigError) as ei:
        parse_config({"retention": {key: value}}, "dev.toml")
    assert f"dev.toml: retention.{key}" in "\n".join(ei.value.problems)
