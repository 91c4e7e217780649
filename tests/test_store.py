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
