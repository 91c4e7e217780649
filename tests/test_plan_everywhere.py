"""Issue 13 (planning half): a data gap is not zero demand, impossible sale dates are rejected with
their line, one plan shows the same figures everywhere, and the time-phased plan orders ahead of a
seasonal peak. Real SQLite, the real CLI, the real forecasters."""

from __future__ import annotations

import datetime as dt
import json
import math
import threading

import numpy as np
import pytest

from edge.refresh import Refresher
from smartstock.config import Config
from smartstock.errors import InputError
from smartstock.inventory.history import history_window
from smartstock.inventory.plan import PAYLOAD_KEYS, payload_fields, plan_sku
from smartstock.planning import refresh_plans
from smartstock.store import open_store
from smartstock.store.sales import Sale, insert_sales
from smartstock.store.stock import book
from smartstock.sync.inbound import validate_sale
from smartstock.sync.topics import Topics

TODAY = dt.datetime.now(dt.timezone.utc).date()
FIGURES = ("on_hand", "demand_per_day", "demand_std_per_day", "demand_basis", "eoq", "lot_size", "order_quantity",
           "safety_stock", "reorder_point", "annual_cost", "days_of_cover", "reorder_now", "stale", "last_sale",
           "history_end", "safety_stock_basis")


def gap_history(store, *, gap_days: int = 150, days: int = 400, per_day: float = 10.0) -> dt.date:
    """`days` of steady sales that end `gap_days` ago, then one sale yesterday. Returns the last day before the gap."""
    end = TODAY - dt.timedelta(days=gap_days)
    sales = [Sale("GAP-1", end - dt.timedelta(days=k), per_day, None, f"g{k}") for k in range(days)]
    sales.append(Sale("GAP-1", TODAY - dt.timedelta(days=1), 4.0, None, "new"))
    with store.transaction() as conn:
        insert_sales(conn, sales)
        book(conn, "GAP-1", "received", 500, ref="po")
    return end


# -- data gaps ----------------------------------------------------------------------------------
def test_history_window_rules():
    d = dt.date(2025, 1, 1)
    days = [d + dt.timedelta(days=k) for k in range(100)]
    w = history_window(days, today=days[-1], max_gap_days=14)
    assert (w.start, w.end, w.stale) == (days[0], days[-1], False)
    # stopped feed: the window is all there is, but it is stale
    w = history_window(days, today=days[-1] + dt.timedelta(days=30), max_gap_days=14)
    assert w.end == days[-1] and w.stale and "30 days ago" in w.reason
    # a gap then one sale: plan from before the gap
    late = days[-1] + dt.timedelta(days=60)
    w = history_window([*days, late], today=late, max_gap_days=14)
    assert (w.start, w.end, w.stale, w.last_sale) == (days[0], days[-1], True, late)
    assert w.gap_start == days[-1] + dt.timedelta(days=1) and w.gap_days == 59
    # a gap followed by enough new data: the new regime, not stale
    after = [late + dt.timedelta(days=k) for k in range(20)]
    w = history_window([*days, *after], today=after[-1], max_gap_days=14)
    assert (w.start, w.end, w.stale) == (late, after[-1], False) and "no sales of any SKU" in w.reason


def test_data_gap_plans_from_before_it_flags_stale_and_alerts(store):
    end = gap_history(store)
    config = Config.model_validate({"inspection": {"sku": "GAP-1"}, "forecast": {"model": "theta"}})
    topics = Topics.from_config(config.mqtt, config.device)
    ref = Refresher(store, config, topics, status=lambda: {}, camera=lambda: [],
                    stop_event=threading.Event(), isolate=False)
    plan = next(p for p in ref.refresh_plans() if p["sku"] == "GAP-1")
    # Filled with zeros up to yesterday the demand would be about 10 * 400 / 550 = 7.3 a day, and
    # the one new sale a week would pull a forecast to ~0.6 a day; the gap is left out instead.
    assert plan["demand_per_day"] == pytest.approx(10.0, rel=0.05), plan
    assert plan["demand_basis"].startswith("forecast:")
    assert plan["stale"] is True and plan["history_end"] == end.isoformat()
    assert plan["data_gap"]["from"] == (end + dt.timedelta(days=1)).isoformat()
    assert plan["last_sale"] == (TODAY - dt.timedelta(days=1)).isoformat()
    assert "data gap" in plan["stale_reason"]
    run = store.query_one("SELECT id FROM forecast_runs WHERE sku = 'GAP-1'")
    last_forecast_date = store.query_one("SELECT MIN(date) FROM forecasts WHERE run_id = ?", (run[0],))[0]
    assert last_forecast_date <= (end + dt.timedelta(days=7)).isoformat()  # forecast from the gap's start on

    current = ref.check_alerts()
    stale = [a for a in current if a["kind"] == "stale_sales"]
    assert len(stale) == 1 and "data gap" in stale[0]["message"] and stale[0]["data"]["skus"] == ["GAP-1"]
    row = store.query_one("SELECT payload FROM outbox WHERE topic = ? ORDER BY id DESC", (topics.alerts,))
    assert "stale_sales" in {a["kind"] for a in json.loads(bytes(row[0]))["alerts"]}
    inv = json.loads(bytes(store.query_one("SELECT payload FROM outbox WHERE topic = ?",
                                           (topics.inventory("GAP-1"),))[0]))
    assert inv["stale"] is True and inv["stale_reason"] == plan["stale_reason"]

    # the feed comes back for longer than the gap threshold: the new data is planned, the alert clears
    with store.transaction() as conn:
        insert_sales(conn, [Sale("GAP-1", TODAY - dt.timedelta(days=k), 20.0, None, f"n{k}") for k in range(2, 60)])
    ref.refresh_plans()
    assert [a for a in ref.check_alerts() if a["kind"] == "stale_sales"] == []
    assert ref.plans[0]["demand_per_day"] > 15


def test_policy_cli_says_stale_and_uses_the_history_before_the_gap(cli, tmp_path):
    with open_store(tmp_path / "cli-state") as store:
        end = gap_history(store)
    p = json.loads(cli("policy", "GAP-1", "--json").out)
    assert p["demand_basis"] == "history:365 days" and p["demand_per_day"] == pytest.approx(10.0)
    assert p["stale"] and p["history_end"] == end.isoformat()
    text = cli("policy", "GAP-1").out
    assert "STALE SALES" in text and "data gap" in text and "history:365 days" in text


def test_lumpy_sku_plans_from_its_empirical_lead_time_demand(cli, tmp_path):
    """Issue 13: a spare part that sells in lumps gets its reorder point from the history's demand over
    the lead time (7 days by default) + one review week, named in the plan; a steady SKU keeps the normal
    model."""
    rng = np.random.default_rng(13)
    start = TODAY - dt.timedelta(days=728)
    sales = [Sale("LUMPY", start + dt.timedelta(days=k), float(rng.integers(5, 30)), None, f"l{k}")
             for k in range(728) if rng.random() < 0.06]
    sales += [Sale("STEADY", start + dt.timedelta(days=k), float(rng.poisson(8)), None, f"s{k}") for k in range(728)]
    with open_store(tmp_path / "cli-state") as store, store.transaction() as conn:
        insert_sales(conn, sales)
    lumpy = json.loads(cli("policy", "LUMPY", "--json").out)
    steady = json.loads(cli("policy", "STEADY", "--json").out)
    assert lumpy["safety_stock_basis"].startswith("empirical:2-week demand sums over 103 weeks"), lumpy
    assert steady["safety_stock_basis"] == "normal"
    # the normal model on the same mean and std would keep less stock for this lumpy part
    from smartstock.config import SkuPolicy
    from smartstock.inventory.policy import DemandEstimate, compute_policy

    normal = compute_policy(SkuPolicy(**lumpy["inputs"]), DemandEstimate(lumpy["demand_per_day"],
                                                                         lumpy["demand_std_per_day"], "t"))
    assert lumpy["reorder_point"] > normal.reorder_point
    assert "safety stock basis: empirical:" in cli("policy", "LUMPY").out


# -- impossible dates and quantities -------------------------------------------------------------
def test_future_and_ancient_dates_are_rejected_with_the_line(cli, tmp_path):
    f = tmp_path / "sales.csv"
    tomorrow = TODAY + dt.timedelta(days=1)  # within the tolerance (time zones)
    f.write_text("sku,date,quantity\n"
                 f"A,{TODAY - dt.timedelta(days=3)},5\n"
                 f"A,{TODAY + dt.timedelta(days=40)},5\n"      # line 3: future
                 "A,1899-12-31,5\n"                             # line 4: ancient
                 f"A,{tomorrow},2\n"
                 f"A,{TODAY},1e300\n"                           # line 6: absurd quantity
                 f"A,{TODAY - dt.timedelta(days=2)},7\n")
    r = cli("sales", "import", f)
    assert r.rc == 3 and "Traceback" not in r.err
    assert f"{f}:3: date" in r.err and "in the future" in r.err
    assert f"{f}:4: date" in r.err and "implausibly old" in r.err
    assert f"{f}:6: quantity" in r.err and "implausibly large" in r.err
    summary = json.loads(cli("sales", "summary", "--json").out)
    assert summary["skus"]["A"]["rows"] == 3 and summary["skus"]["A"]["total_quantity"] == 14
    assert summary["skus"]["A"]["last_date"] == tomorrow.isoformat()
    assert "Infinity" not in cli("sales", "summary", "--json").out

    out = cli("forecast", f, "--out", tmp_path / "fc.csv")
    assert out.rc == 3 and str(f) in out.err and "line 3: date" in out.err and "in the future" in out.err


def test_mqtt_sales_with_impossible_dates_are_refused_with_a_reason():
    ok = {"id": "1", "sku": "A", "date": TODAY.isoformat(), "quantity": 2}
    assert validate_sale(ok)["quantity"] == 2.0
    for date, why in (((TODAY + dt.timedelta(days=9)).isoformat(), "in the future"), ("1950-01-01", "implausibly old")):
        with pytest.raises(InputError, match=why):
            validate_sale({**ok, "date": date})
    with pytest.raises(InputError, match="implausibly large"):
        validate_sale({**ok, "quantity": 1e200})


# -- one plan everywhere -------------------------------------------------------------------------
def test_payload_carries_every_key_null_when_unknown_and_stays_bounded(store):
    config = Config()
    with store.transaction() as conn:
        plan = plan_sku(conn, config, "NOTHING")  # no sales, no annual demand: a plan with an error
    fields = payload_fields(plan)
    assert set(fields) == set(PAYLOAD_KEYS) and fields["reorder_point"] is None and fields["days_of_cover"] is None
    assert "no sales history" in fields["error"]
    big = {**plan, "horizon": [{"start": "2026-01-01", "demand": 1.0, "extra": 1}] * 200, "forecast": [1.0] * 365}
    small = payload_fields(big)
    assert len(small["horizon"]) == 26 and len(small["forecast"]) == 26 and "extra" not in small["horizon"][0]
    assert len(json.dumps(small)) < 8_000


def test_policy_cli_mqtt_payload_and_refresher_plans_agree(cli, tmp_path):
    state = tmp_path / "cli-state"
    rng = np.random.default_rng(5)
    start = TODAY - dt.timedelta(days=300)
    with open_store(state) as store:
        with store.transaction() as conn:
            insert_sales(conn, [Sale("AGREE", start + dt.timedelta(days=k), float(rng.poisson(8)), None, f"a{k}")
                                for k in range(298)])
            book(conn, "AGREE", "received", 120, ref="po")
            book(conn, "AGREE", "produced", 95, ref="m")
            book(conn, "AGREE", "scrapped", 5, ref="s")
        cfg = tmp_path / "smartstock.toml"
        cfg.write_text('[inspection]\nsku = "AGREE"\n[forecast]\nmodel = "theta"\n'
                       '[inventory.defaults]\nholding_cost = 0.35\norder_cost = 12.5\n')
        config = Config.model_validate({"inspection": {"sku": "AGREE"}, "forecast": {"model": "theta"},
                                        "inventory": {"defaults": {"holding_cost": 0.35, "order_cost": 12.5}}})
        topics = Topics.from_config(config.mqtt, config.device)
        ref = Refresher(store, config, topics, status=lambda: {}, camera=lambda: [],
                        stop_event=threading.Event(), isolate=False)
        shown = ref.refresh_plans()[0]  # what /api/status serves (App.status returns refresher.plans)
        mqtt = json.loads(bytes(store.query_one("SELECT payload FROM outbox WHERE topic = ?",
                                                (topics.inventory("AGREE"),))[0]))
    cli_plan = json.loads(cli("policy", "AGREE", "--json", "--config", cfg).out)
    assert cli_plan["demand_basis"] == "forecast:" + shown["model"]
    for k in FIGURES:
        assert cli_plan[k] == shown[k] == mqtt[k], k
    assert cli_plan["on_hand"] == 215 and cli_plan["defect_rate"] == pytest.approx(0.05)
    assert mqtt["holding_cost"] == 0.35 and mqtt["horizon"] and len(mqtt["horizon"]) == config.forecast.horizon
    text = cli("policy", "AGREE", "--config", cfg).out
    assert "0.35" in text and "12.50" in text and f"{cli_plan['reorder_point']:.2f}" in text


# -- time-phased plan ----------------------------------------------------------------------------
def test_time_phased_plan_orders_ahead_of_a_seasonal_peak(cli, tmp_path):
    """Two years of weekly sales with a 5x peak for two weeks each year; the peak of the coming year
    falls in weeks 6-7 of the horizon. Seasonal naive forecasts it; the plan must place the order
    that serves the peak before the peak starts, and raise the reorder point ahead of it."""
    last_sunday = TODAY - dt.timedelta(days=TODAY.weekday() + 1)
    first = last_sunday - dt.timedelta(days=7 * 104 - 1)
    peak_weeks = {104 + 5 - 52, 104 + 6 - 52, 104 + 5 - 104, 104 + 6 - 104}  # weeks 6-7 ahead, one and two years back
    rows = []
    for w in range(104):
        qty = 50.0 if w in peak_weeks else 10.0
        rows += [Sale("SEASON", first + dt.timedelta(days=7 * w + k), qty, None, f"s{w}-{k}") for k in range(7)]
    state = tmp_path / "cli-state"
    with open_store(state) as store:
        with store.transaction() as conn:
            insert_sales(conn, rows)
            book(conn, "SEASON", "received", 300, ref="po")
        config = Config.model_validate({"inspection": {"sku": "SEASON"},
                                        "forecast": {"model": "seasonal-naive", "freq": "W", "horizon": 12},
                                        "inventory": {"defaults": {"lead_time_days": 14}}})
        plan = next(p for p in refresh_plans(store, config) if p["sku"] == "SEASON")
    h = plan["horizon"]
    assert len(h) == 12 and [r["demand"] for r in h][5:7] == [350.0, 350.0], [r["demand"] for r in h]
    peak_start = h[5]["start"]
    # the reorder point rises a lead time (two weeks) before the peak, not when it starts
    assert h[4]["reorder_point"] > 2 * h[0]["reorder_point"]
    assert h[4]["reorder_point"] >= 70 + 350  # week 5 and the first peak week: the next 14 days
    # stock of 300 covers the quiet weeks; the order for the peak is placed before it and arrives in time
    orders = [r for r in h if r["order_total"]]
    assert orders and orders[0]["first_order_day"] < peak_start
    arrival = dt.date.fromisoformat(orders[0]["first_order_day"]) + dt.timedelta(days=14)
    assert arrival.isoformat() <= peak_start
    assert all(r["projected_on_hand"] > 0 for r in h[:8]), [r["projected_on_hand"] for r in h]
    # the flat plan from the horizon's mean demand would reorder far too late for that peak
    assert plan["reorder_point"] < h[4]["reorder_point"]

    cfg = tmp_path / "smartstock.toml"
    cfg.write_text('[inspection]\nsku = "SEASON"\n[forecast]\nmodel = "seasonal-naive"\nhorizon = 12\n'
                   "[inventory.defaults]\nlead_time_days = 14\n")
    cli_plan = json.loads(cli("policy", "SEASON", "--json", "--horizon", "--config", cfg).out)
    assert [r["reorder_point"] for r in cli_plan["horizon"]] == [r["reorder_point"] for r in h]
    text = cli("policy", "SEASON", "--horizon", "--config", cfg).out
    assert "time-phased plan" in text and peak_start in text
    assert all(math.isfinite(r["safety_stock"]) for r in h)


def test_status_api_shows_the_plan_policy_and_mqtt_show(cli, tmp_path):
    """The edge App in-process (fake classifier, our own interface) plans in its child process and
    serves /api/status; `smartstock policy` afterwards and the retained inventory message agree."""
    import time
    import urllib.request

    from edge.app import App
    from edge.samples import write_parts
    from tests.edge_fakes import FakeClassifier

    state = tmp_path / "cli-state"
    rng = np.random.default_rng(9)
    start = TODAY - dt.timedelta(days=200)
    with open_store(state) as store, store.transaction() as conn:
        insert_sales(conn, [Sale("SHELF-9", start + dt.timedelta(days=k), float(rng.poisson(6)), None, f"h{k}")
                            for k in range(199)])
        book(conn, "SHELF-9", "received", 80, ref="po")
    write_parts(tmp_path / "parts", 4, size=48)
    config = Config.model_validate({"inspection": {"sku": "LINE-1"}, "forecast": {"model": "theta"},
                                    "source": {"uri": str(tmp_path / "parts")}, "http": {"port": 0},
                                    "ota": {"enabled": False}, "inventory": {"defaults": {"order_cost": 7.25}}})
    app = App(config, state, classifier=FakeClassifier())
    app.start()
    try:
        deadline = time.monotonic() + 120
        shown = None
        while time.monotonic() < deadline and shown is None:
            with urllib.request.urlopen(f"http://127.0.0.1:{app.http.port}/api/status", timeout=5) as r:
                shown = next((p for p in json.load(r)["plans"] if p["sku"] == "SHELF-9"), None)
            time.sleep(0.5)
        assert shown is not None, "no plan served within 120 s"
    finally:
        app.stop()
    with open_store(state) as store:
        mqtt = json.loads(bytes(store.query_one("SELECT payload FROM outbox WHERE topic LIKE '%/inventory/SHELF-9' "
                                                "ORDER BY id DESC")[0]))
    cfg = tmp_path / "smartstock.toml"
    cfg.write_text('[inspection]\nsku = "LINE-1"\n[forecast]\nmodel = "theta"\n[inventory.defaults]\norder_cost = 7.25\n')
    cli_plan = json.loads(cli("policy", "SHELF-9", "--json", "--config", cfg).out)
    assert shown["demand_basis"].startswith("forecast:") and shown["order_cost"] == 7.25
    for k in FIGURES:
        assert cli_plan[k] == shown[k] == mqtt[k], k


def test_sales_summary_json_stays_json_with_rows_stored_before_the_bound(cli, tmp_path):
    """Rows of 1e308 were accepted before quantities were bounded; their sum must not print Infinity."""
    with open_store(tmp_path / "cli-state") as store, store.transaction() as conn:
        insert_sales(conn, [Sale("OLD", TODAY - dt.timedelta(days=k), 1e308, None, f"o{k}") for k in range(2)])
    r = cli("sales", "summary", "--json")
    assert r.rc == 0 and "Infinity" not in r.out
    assert json.loads(r.out)["skus"]["OLD"]["total_quantity"] is None
