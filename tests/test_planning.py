"""refresh_plans: sales in the store -> forecast run stored -> policy from forecast demand, with the
standard deviation taken from measured backtest errors and the measured defect rate."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from smartstock.config import Config
from smartstock.forecasting.io import DAYS_PER_BUCKET
from smartstock.planning import bucket_daily, refresh_plans
from smartstock.store.sales import Sale, insert_sales
from smartstock.store.stock import book


def fill(store, days: int = 180) -> None:
    rng = np.random.default_rng(2)
    start = dt.date(2024, 1, 1)
    sales = [Sale("PART-001", start + dt.timedelta(days=k), float(rng.poisson(12)), None, f"a{k}") for k in range(days)]
    sales += [Sale("SPARE-9", start + dt.timedelta(days=k), 3.0, None, f"b{k}") for k in range(0, days, 17)]
    with store.transaction() as conn:
        insert_sales(conn, sales)
        book(conn, "PART-001", "produced", 900)
        book(conn, "PART-001", "scrapped", 100)  # 10 % defect rate
        book(conn, "PART-001", "sold", 300)


def test_bucket_daily_drops_the_unfinished_week():
    daily = [(dt.date(2024, 1, 1), 2.0), (dt.date(2024, 1, 9), 3.0), (dt.date(2024, 1, 17), 5.0)]
    start, y = bucket_daily(daily, "W", dt.date(2024, 1, 17))  # Wednesday: its week is not over
    np.testing.assert_allclose(y, [2.0, 3.0])
    start, y = bucket_daily(daily, "W", dt.date(2024, 1, 21))  # Sunday: complete
    np.testing.assert_allclose(y, [2.0, 3.0, 5.0])


def test_refresh_plans_forecasts_stores_and_plans(store):
    fill(store)
    cfg = Config()
    cfg.inventory.skus = {"GHOST": {"lead_time_days": 3}}
    plans = {p["sku"]: p for p in refresh_plans(store, cfg)}
    assert set(plans) == {"PART-001", "SPARE-9"}

    part = plans["PART-001"]
    assert part["model"] and part["demand_class"] == "smooth"
    assert "backtest errors" in part["source"]
    assert part["on_hand"] == pytest.approx(600.0)
    assert part["defect_rate"] == pytest.approx(0.1)
    assert part["demand_per_day"] == pytest.approx(12.0, rel=0.2)
    assert len(part["forecast"]) == cfg.forecast.horizon
    # the std is the RMSE of the chosen model's backtest errors per week, spread over 7 days
    run = store.query_one("SELECT * FROM forecast_runs WHERE sku = 'PART-001'")
    meta = json.loads(run["metrics_json"])
    assert run["model"] == part["model"] and run["freq"] == "W" and run["horizon"] == 8
    rmse_weekly = meta["backtest"][part["model"]]["rmse"]
    assert part["demand_std_per_day"] == pytest.approx(rmse_weekly / np.sqrt(DAYS_PER_BUCKET["W"]), rel=0.5)
    assert part["demand_std_per_day"] > 0
    # policy uses the measured yield: starts 1/(1-p) more than the lot, reorder point covers the lead time
    pol = cfg.inventory.policy_for("PART-001")
    assert part["order_quantity"] == pytest.approx(part["lot_size"] / 0.9)
    assert part["reorder_point"] == pytest.approx(
        part["demand_per_day"] * pol.lead_time_days / 0.9 + part["safety_stock"])
    assert part["safety_stock"] > 0

    spare = plans["SPARE-9"]
    assert spare["demand_class"] in ("intermittent", "lumpy") and spare["model"] in ("croston-mix", "croston", "sba", "tsb")
    rows = store.query("SELECT COUNT(*) FROM forecasts JOIN forecast_runs ON run_id = id GROUP BY sku")
    assert [r[0] for r in rows] == [8, 8]


def test_sku_without_history_gets_an_error_not_a_crash(store):
    fill(store, days=60)
    cfg = Config()
    cfg.inspection.sku = "NEW-PART"
    plans = {p["sku"]: p for p in refresh_plans(store, cfg)}
    assert "no sales history" in plans["NEW-PART"]["error"]
    assert plans["PART-001"]["reorder_point"] > 0
    cfg.inventory.skus = {"NEW-PART": {"annual_demand": 365.0}}
    plans = {p["sku"]: p for p in refresh_plans(store, cfg)}
    assert plans["NEW-PART"]["demand_per_day"] == pytest.approx(1.0)
    assert plans["NEW-PART"]["model"] is None


def test_empty_store_plans_nothing_but_the_configured_sku(store):
    plans = refresh_plans(store, Config())
    assert [p["sku"] for p in plans] == ["PART-001"] and "error" in plans[0]
    assert store.query_one("SELECT COUNT(*) FROM forecast_runs")[0] == 0
