"""Reading sales/series CSVs (bad input named by line), and the real `smartstock forecast` / `backtest`
commands on generated data, including --from-store writing forecast rows into SQLite."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from smartstock.errors import InputError
from smartstock.forecasting.io import period_start, read_series_csv


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def sales_csv(path: Path, days: int = 150) -> Path:
    """Daily sales of three SKUs: steady, weekly-patterned and a sparse spare part."""
    rng = np.random.default_rng(4)
    rows = ["sku,date,quantity"]
    start = dt.date(2024, 1, 1)
    for k in range(days):
        d = start + dt.timedelta(days=k)
        rows.append(f"STEADY,{d},{rng.poisson(20)}")
        rows.append(f"WEEKLY,{d},{rng.poisson(5 + 10 * (d.weekday() < 2))}")
        if rng.random() < 0.08:
            rows.append(f"SPARE,{d},{rng.integers(1, 6)}")
    return write(path, "\n".join(rows) + "\n")


# -- reading -------------------------------------------------------------------------------------
def test_sales_rows_are_bucketed_and_gaps_are_zero(tmp_path):
    f = write(tmp_path / "s.csv", "sku,date,quantity\nA,2024-01-01,2\nA,2024-01-03,3\nB,2024-01-02,1\n"
                                  "A,2024-01-28,4\nA,2024-01-01,5\n")
    t = read_series_csv(f, "W")
    assert t.naming == "sku" and t.freq == "W"
    np.testing.assert_allclose(t.series["A"].y, [10.0, 0.0, 0.0, 4.0])  # same-week rows summed, empty weeks 0
    np.testing.assert_allclose(t.series["B"].y, [1.0, 0.0, 0.0, 0.0])   # runs to the file's last week
    assert t.dates_after(t.series["A"], 2) == [dt.date(2024, 1, 29), dt.date(2024, 2, 5)]
    # a file that stops on a Wednesday: that part-week is left out instead of looking like a slump
    f = write(tmp_path / "s2.csv", "sku,date,quantity\nA,2024-01-01,7\nA,2024-01-08,7\nA,2024-01-10,1\n")
    np.testing.assert_allclose(read_series_csv(f, "W").series["A"].y, [7.0])


def _gap_file(path, *, after_days: int) -> tuple:
    """300 days of steady sales of A and B, 120 days of no sales at all, then `after_days` days of sales."""
    start = dt.date(2024, 1, 1)
    end = start + dt.timedelta(days=299)
    rows = ["sku,date,quantity"]
    rows += [f"{s},{start + dt.timedelta(days=k)},10" for k in range(300) for s in "AB"]
    back = end + dt.timedelta(days=121)
    rows += [f"A,{back + dt.timedelta(days=k)},30" for k in range(after_days)]
    return write(path, "\n".join(rows) + "\n"), end, back


def test_a_data_gap_in_a_sales_file_is_left_out_not_read_as_zeros(tmp_path):
    f, end, back = _gap_file(tmp_path / "gap.csv", after_days=1)
    assert 0.0 in read_series_csv(f, "W").series["A"].y  # without the rule: 17 weeks of zeros
    t = read_series_csv(f, "W", gap_periods=8)
    assert t.window is not None and t.window.stale and t.window.end == end and "data gap" in t.window.reason
    for s in t.series.values():
        assert s.y.min() > 0 and period_start(s.start + len(s.y) - 1, "W") <= end  # only the weeks before it
    # enough sales after the gap (longer than the gap rule): the new regime is used, not stale
    f, end, back = _gap_file(tmp_path / "regime.csv", after_days=70)
    t = read_series_csv(f, "W", gap_periods=8)
    assert not t.window.stale and t.window.start == back and set(t.series) == {"A"}
    assert np.all(t.series["A"].y == 210.0)


def test_cli_forecast_says_so_when_a_file_has_a_data_gap(cli, tmp_path):
    f, end, _ = _gap_file(tmp_path / "gap.csv", after_days=1)
    r = cli("forecast", f, "--horizon", "4", "--freq", "W", "--model", "theta", "--out", tmp_path / "o.csv")
    assert r.rc == 0 and "STALE SALES: data gap" in r.out, r.out
    fc = (tmp_path / "o.csv").read_text().splitlines()[1:]
    assert all(float(line.split(",")[2]) == pytest.approx(70.0, rel=0.05) for line in fc)  # not dragged to ~0
    r = cli("backtest", f, "--horizon", "4", "--freq", "W", "--models", "naive")
    assert r.rc == 0 and "STALE SALES: data gap" in r.out


def test_series_format_keeps_dates_and_infers_freq(tmp_path):
    f = write(tmp_path / "q.csv", "unique_id,ds,y\nX,2020-03-31,1\nX,2020-06-30,2\nX,2020-12-31,4\n")
    t = read_series_csv(f)
    assert t.freq == "Q"
    np.testing.assert_allclose(t.series["X"].y, [1.0, 2.0, 0.0, 4.0])
    assert t.dates_after(t.series["X"], 2) == [dt.date(2021, 3, 31), dt.date(2021, 6, 30)]


@pytest.mark.parametrize("text, pattern", [
    ("item,day,qty\nA,2024-01-01,1\n", r"missing required columns; found 'item', 'day', 'qty'"),
    ("sku,date,quantity\nA,2024-01-01,1\nA,2024-01-02,lots\n", r"line 3: quantity 'lots' is not a number"),
    ("sku,date,quantity\nA,2024-01-01,\n", r"line 2: quantity '' is empty"),
    ("sku,date,quantity\nA,2024-01-01,-4\n", r"line 2: quantity '-4' is negative"),
    ("sku,date,quantity\nA,01/02/2024,3\n", r"line 2: date '01/02/2024' is not a date"),
    ("unique_id,ds,y\nA,2024-01-01,1\nA,2024-03-01,1\nA,2024-02-01,1\n", r"q.csv:4: A: date 2024-02-01 comes after 2024-03-01 \(line 3\).*sort"),
    ("unique_id,ds,y\nA,2024-01-01,1\nA,2024-02-01,1\nA,2024-02-01,2\n", r"q.csv:4: A: date 2024-02-01 is the same period as line 3"),
    ("sku,date,quantity\n", r"no data rows"),
])
def test_bad_input_names_file_line_and_fix(tmp_path, text, pattern):
    with pytest.raises(InputError, match=pattern):
        read_series_csv(write(tmp_path / "q.csv", text), "M")


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_forecast_sales_csv(cli, tmp_path):
    src = sales_csv(tmp_path / "sales.csv")
    out = tmp_path / "fc.csv"
    r = cli("forecast", src, "--horizon", "4", "--freq", "W", "--out", out, "--jobs", "2")
    assert r.rc == 0, r.err
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["sku", "date", "forecast", "lo", "hi"]
    assert len(rows) == 3 * 4
    by = {}
    for row in rows:
        lo, m, hi = float(row["lo"]), float(row["forecast"]), float(row["hi"])
        assert 0 <= lo <= m <= hi
        by.setdefault(row["sku"], []).append(m)
    assert 100 < np.mean(by["STEADY"]) < 180  # 20 a day = 140 a week
    assert np.mean(by["SPARE"]) < 10
    assert rows[0]["date"] == "2024-05-27"  # the Monday after the last full week of data
    assert "3 series" in r.out


def test_cli_forecast_mirrors_unique_id_names_and_reports_bad_input(cli, tmp_path):
    lines = ["unique_id,ds,y"] + [f"S1,{2018 + k // 12}-{k % 12 + 1:02d}-01,{100 + k}" for k in range(30)]
    src = write(tmp_path / "m.csv", "\n".join(lines) + "\n")
    out = tmp_path / "o.csv"
    r = cli("forecast", src, "--horizon", "3", "--model", "ets", "--out", out, "--jobs", "1")
    assert r.rc == 0, r.err
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["unique_id", "ds", "forecast", "lo", "hi"]
    assert [r_["ds"] for r_ in rows] == ["2020-07-01", "2020-08-01", "2020-09-01"]
    assert float(rows[0]["forecast"]) == pytest.approx(130, abs=3)

    bad = write(tmp_path / "bad.csv", "unique_id,ds,y\nS1,2020-01-01,1\nS1,2020-02-01,x\n")
    r = cli("forecast", bad, "--horizon", "3", "--out", tmp_path / "never.csv")
    assert r.rc == 3
    assert "line 3" in r.err and "not a number" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "never.csv").exists()


def test_cli_backtest_json(cli, tmp_path):
    src = sales_csv(tmp_path / "sales.csv")
    r = cli("backtest", src, "--horizon", "3", "--freq", "W", "--models", "naive,theta,sba", "--windows", "2", "--json")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert doc["series"] == 3 and doc["freq"] == "W"
    models = {m["model"]: m for m in doc["models"]}
    assert set(models) == {"naive", "theta", "sba"}
    for m in models.values():
        assert m["series"] == 3 and m["mase"] > 0 and 0 <= m["coverage"] <= 1
    r = cli("backtest", src, "--models", "naive,prophet")
    assert r.rc == 2 and "prophet" in r.err


def test_cli_forecast_from_store_writes_runs(cli, tmp_path):
    src = sales_csv(tmp_path / "sales.csv")
    assert cli("sales", "import", src).rc == 0
    r = cli("forecast", "--from-store", "--horizon", "5", "--freq", "W", "--jobs", "1")
    assert r.rc == 0, r.err
    db = sqlite3.connect(tmp_path / "cli-state" / "smartstock.sqlite")
    runs = db.execute("SELECT sku, model, freq, horizon, metrics_json FROM forecast_runs ORDER BY sku").fetchall()
    assert [x[0] for x in runs] == ["SPARE", "STEADY", "WEEKLY"]
    assert all(x[2] == "W" and x[3] == 5 for x in runs)
    assert json.loads(runs[0][4])["demand_class"] in ("intermittent", "lumpy")
    assert runs[0][1] in ("croston-mix", "croston", "sba", "tsb")
    n = db.execute("SELECT COUNT(*), MIN(lo <= forecast AND forecast <= hi) FROM forecasts").fetchone()
    assert n == (15, 1)


def test_policy_uses_the_stored_forecast_until_new_sales_arrive(cli, tmp_path):
    """Issue 4: the forecast feeds the policy (mean from the forecast, std from its backtest errors)."""
    src = sales_csv(tmp_path / "sales.csv")
    assert cli("sales", "import", src).rc == 0
    before = json.loads(cli("policy", "STEADY", "--json").out)
    assert not before["demand_source"].startswith("forecast:")
    assert cli("forecast", "--from-store", "--horizon", "5", "--freq", "W", "--jobs", "1").rc == 0
    after = json.loads(cli("policy", "STEADY", "--json").out)
    assert after["demand_source"].startswith("forecast:"), after
    db = sqlite3.connect(tmp_path / "cli-state" / "smartstock.sqlite")
    stored = json.loads(db.execute("SELECT metrics_json FROM forecast_runs WHERE sku = 'STEADY'").fetchone()[0])
    assert after["demand_per_day"] == pytest.approx(stored["demand"]["mean_per_day"])
    # New sales make the forecast stale: the policy falls back to the sales history.
    more = tmp_path / "more.csv"
    more.write_text("sku,date,quantity\nSTEADY,2024-06-01,5\n")  # the day after the history
    assert cli("sales", "import", more).rc == 0
    assert not json.loads(cli("policy", "STEADY", "--json").out)["demand_source"].startswith("forecast:")
