from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest

from smartstock.errors import StoreError
from smartstock.store import open_store


def test_store_is_wal_with_migrations(store):
    assert store.query_one("PRAGMA journal_mode")[0] == "wal"
    assert store.schema_version()[0] == "0001_initial"
    tables = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"skus", "stock_movements", "sales", "inspections", "forecasts", "alerts", "model_history",
            "outbox"} <= tables


def test_migrations_run_once(state_dir):
    open_store(state_dir).close()
    s = open_store(state_dir)
    assert s.schema_version().count("0001_initial") == 1
    s.close()


def test_transaction_rolls_back_on_error(store):
    with pytest.raises(RuntimeError):
        with store.transaction() as conn:
            conn.execute("INSERT INTO kv(key, value, updated_at) VALUES ('a', '1', 'now')")
            raise RuntimeError("boom")
    assert store.get_kv("a") is None


def test_unwritable_state_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="state"):
        open_store(blocker / "sub")


def test_corrupt_store_is_a_clear_error(state_dir):
    (state_dir / "smartstock.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        open_store(state_dir)


WRITER = """
import sys
from smartstock.store import open_store
s = open_store(sys.argv[1])
i = 0
while True:
    with s.transaction() as c:
        c.execute("INSERT INTO stock_movements(ts, sku, kind, quantity, ref) VALUES ('t', 'A', 'produced', 1, ?)", (f'a{i}',))
        c.execute("INSERT INTO stock_movements(ts, sku, kind, quantity, ref) VALUES ('t', 'A', 'scrapped', 1, ?)", (f'b{i}',))
    print(i, flush=True)
    i += 1
"""


def test_sigkill_mid_write_never_corrupts_or_loses_commits(state_dir):
    """Kill a writer at random moments; every acknowledged transaction survives, pairs stay whole."""
    for attempt in range(5):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(state_dir)], stdout=subprocess.PIPE, text=True)
        time.sleep(0.3 + 0.17 * attempt)
        p.kill()
        out, _ = p.communicate()
        acked = [int(x) for x in out.split()]
        s = open_store(state_dir)
        assert s.integrity_ok()
        kinds = dict(s.query("SELECT kind, COUNT(*) FROM stock_movements GROUP BY kind"))
        assert kinds.get("produced", 0) == kinds.get("scrapped", 0)  # a transaction is all or nothing
        refs = {r[0] for r in s.query("SELECT ref FROM stock_movements")}
        assert all(f"a{i}" in refs for i in acked[-3:])  # acknowledged commits are durable
        s.execute("DELETE FROM stock_movements")
        s.close()


def test_concurrent_reader_sees_committed_state(state_dir):
    s1 = open_store(state_dir)
    s2 = open_store(state_dir)
    s1.set_kv("k", "v")
    assert s2.get_kv("k") == "v"
    s1.close()
    s2.close()
    with sqlite3.connect(state_dir / "smartstock.sqlite") as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_insert_rows_chunks_under_the_parameter_limit_and_can_ignore_duplicates(store):
    from smartstock.store.db import insert_rows
    from smartstock.store.stock import book_many, levels

    rows = [(f"2026-01-01T00:00:{i % 60:02d}.000Z", "SKU-A", "produced", 1.0, f"ref-{i}") for i in range(700)]
    with store.transaction() as conn:  # 700 rows x 5 columns: several statements of at most 999 parameters
        insert_rows(conn, "stock_movements", ("ts", "sku", "kind", "quantity", "ref"), rows)
    with store.transaction() as conn:
        insert_rows(conn, "stock_movements", ("ts", "sku", "kind", "quantity", "ref"), rows[:10], or_ignore=True)
        book_many(conn, [("SKU-A", "scrapped", 1.0, "ref-x", "2026-01-01T00:01:00.000Z"),
                         ("SKU-A", "scrapped", 1.0, "ref-x", "2026-01-01T00:01:00.000Z")])  # same ref: once
    lv = levels(store.conn)["SKU-A"]
    assert (lv["produced"], lv["scrapped"]) == (700, 1)
    with pytest.raises(ValueError, match="unknown movement kind"):
        with store.transaction() as conn:
            book_many(conn, [("SKU-A", "stolen", 1.0, "ref-y", "2026-01-01T00:02:00.000Z")])
    assert store.query_one("SELECT COUNT(*) FROM stock_movements")[0] == 701  # the failed batch left nothing


def test_event_ids_are_uuid7_unique_and_in_time_order():
    import uuid

    from smartstock.sync.payloads import new_event_id

    ids = []
    for _ in range(5):
        ids += [new_event_id() for _ in range(2000)]
        time.sleep(0.002)
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)
    u = uuid.UUID(ids[0])
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert abs(int(ids[-1][:12], 16) / 1000 - time.time()) < 5  # the first 48 bits are unix milliseconds
    ms = [i[:12] for i in ids]
    assert ms == sorted(ms)  # ids made later never sort before earlier ones (to the millisecond)
