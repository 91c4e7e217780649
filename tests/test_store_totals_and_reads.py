"""Running stock totals (migration 0004) and the read context (`Store.read()`), on real SQLite files."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import threading

import pytest

from smartstock.store import open_store
from smartstock.store.sales import Sale, insert_sales
from smartstock.store.stock import KINDS, book, book_many, levels, levels_from_rows

AGGREGATE = "SELECT sku, kind, SUM(quantity) FROM stock_movements GROUP BY sku, kind ORDER BY sku"


def fresh_aggregate(conn: sqlite3.Connection) -> dict[str, dict[str, float]]:
    """What levels() used to compute on every call: the whole movements table, summed."""
    return levels_from_rows(conn.execute(AGGREGATE))


def assert_same_levels(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for sku, row in want.items():
        assert got[sku] == pytest.approx(row, rel=1e-12, abs=1e-9), sku


def test_running_totals_equal_a_fresh_aggregate_after_many_bookings(store):
    rng = random.Random(7)
    skus = ["A", "B-2", "C_3"]
    n = 0
    for round_ in range(40):
        with store.transaction() as conn:
            for _ in range(rng.randint(1, 5)):  # single bookings, some repeating a ref (ignored)
                n += 1
                kind = rng.choice(KINDS)
                qty = rng.choice([1.0, 2.5, 0.1, 7.0]) * (-1 if kind == "adjusted" and rng.random() < 0.5 else 1)
                ref = f"r{rng.randint(0, n)}" if rng.random() < 0.7 else None
                book(conn, rng.choice(skus), kind, qty, ref=ref)
            rows = [(rng.choice(skus), rng.choice(["produced", "scrapped"]), 1.0, f"e{round_}-{i % 50}",
                     "2026-01-01T00:00:00.000Z") for i in range(64)]  # the loop's batch, with repeated refs
            book_many(conn, rows)
        if round_ % 10 == 3:  # a failed batch: its movements and its totals roll back together
            with pytest.raises(ValueError, match="quantity must be >= 0"):
                with store.transaction() as conn:
                    book_many(conn, [("A", "produced", 5.0, f"bad{round_}", "2026-01-01T00:00:00.000Z")])
                    book(conn, "B-2", "received", 3.0)
                    book_many(conn, [("A", "sold", -1.0, None, "2026-01-01T00:00:00.000Z")])
    with store.transaction() as conn:  # the sales import inserts its movements itself: counted too
        sales = [Sale("A", dt.date(2026, 1, d), 2.0, None, f"k{d}") for d in range(1, 10)]
        insert_sales(conn, sales, book_stock=True)
        insert_sales(conn, sales, book_stock=True)  # a re-import: nothing new
    with store.read() as conn:
        totals, fresh = levels(conn), fresh_aggregate(conn)
        assert_same_levels(totals, fresh)
        assert levels(conn, "A") == {"A": totals["A"]}
        assert conn.execute("SELECT COUNT(*) FROM stock_movements WHERE ref LIKE 'bad%'").fetchone()[0] == 0
    assert totals["A"]["sold"] >= 18.0


def test_movements_are_append_only(store):
    with store.transaction() as conn:
        book(conn, "A", "produced", 3.0, ref="x")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        with store.transaction() as conn:
            conn.execute("UPDATE stock_movements SET quantity = 30 WHERE ref = 'x'")
    with store.read() as conn:
        assert levels(conn)["A"]["produced"] == 3.0


def test_migration_backfills_totals_from_existing_movements(state_dir):
    s = open_store(state_dir)
    with s.transaction() as conn:  # back to the schema before 0004, with history booked under it
        for stmt in ("DROP TRIGGER stock_totals_add", "DROP TRIGGER stock_movements_append_only",
                     "DROP INDEX stock_movements_ts", "DROP TABLE stock_totals",
                     "DELETE FROM schema_migrations WHERE name = '0004_stock_totals'"):
            conn.execute(stmt)
        book_many(conn, [(f"S{i % 7}", KINDS[i % 5], float(i % 3), f"m{i}", "2026-01-01T00:00:00.000Z")
                         for i in range(500)])
    s.close()
    s = open_store(state_dir)
    assert "0004_stock_totals" in s.schema_version()
    with s.read() as conn:
        assert len(levels(conn)) == 7
        assert_same_levels(levels(conn), fresh_aggregate(conn))
    s.close()


def test_reads_do_not_wait_for_a_writer_holding_the_write_transaction(store):
    with store.transaction() as conn:
        book(conn, "A", "produced", 1.0)
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with store.transaction() as conn:
            book(conn, "A", "produced", 5.0)
            with store.read() as own:  # inside its own transaction a read sees the uncommitted row
                assert levels(own)["A"]["produced"] == 6.0
            holding.set()
            release.wait(30)

    seen: dict = {}

    def reader() -> None:
        with store.read() as conn:
            seen["levels"] = levels(conn)
            seen["rows"] = conn.execute("SELECT COUNT(*) FROM stock_movements").fetchone()[0]
        seen["kv"] = store.get_kv("nothing", "default")

    w = threading.Thread(target=writer)
    w.start()
    try:
        assert holding.wait(10)
        r = threading.Thread(target=reader)
        r.start()
        r.join(10)
        finished_while_held = not r.is_alive()
    finally:
        release.set()
        w.join(10)
    assert finished_while_held, "a read waited for the writer's lock"
    assert seen == {"levels": {"A": pytest.approx(levels_from_rows([("A", "produced", 1.0)])["A"])}, "rows": 1,
                    "kv": "default"}  # the last commit, not the writer's open transaction
    with store.read() as conn:
        assert levels(conn)["A"]["produced"] == 6.0


def test_reads_do_not_wait_for_another_process_holding_the_write_lock(store):
    other = sqlite3.connect(store.path, isolation_level=None, timeout=0.1)  # as a second process would
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO kv(key, value, updated_at) VALUES ('k', 'v', 'now')")
        assert store.get_kv("k") is None
        with store.read() as conn:
            assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
        other.execute("COMMIT")
        assert store.get_kv("k") == "v"
    finally:
        other.close()


def test_a_read_cannot_write(store):
    with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|query_only"):
        with store.read() as conn:
            conn.execute("INSERT INTO kv(key, value, updated_at) VALUES ('k', 'v', 'now')")
    assert store.get_kv("k") is None


def test_pending_migrations_names_what_opening_will_apply(state_dir):
    from smartstock.store.db import pending_migrations

    path = state_dir / "smartstock.sqlite"
    assert pending_migrations(path) == []  # a new store: created at once
    open_store(state_dir).close()
    assert pending_migrations(path) == []
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE name = '0004_stock_totals'")
    assert pending_migrations(path) == ["0004_stock_totals"]
