"""One SKU's plan from the store: the one function behind every place a plan is shown.

`smartstock policy`, the report (with a store), the status page (/api/status) and the retained
`{base}/inventory/<sku>` message all show `plan_sku`'s dict, so they agree for the same store state:
on hand, demand per day and its basis (`forecast:<model>` from the SKU's latest forecast run, else
`history:<n> days` of sales, else `config:annual_demand`), EOQ and the yield-adjusted start quantity,
safety stock, reorder point, the data window (gap, stale) and the time-phased plan of the horizon.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import sqlite3
from typing import Any

from smartstock.config import Config, ForecastConfig
from smartstock.errors import ConfigError, InvalidParameter, SmartStockError
from smartstock.forecasting.io import DAYS_PER_BUCKET, bucket_daily
from smartstock.inventory.history import HistoryWindow, history_window, max_gap_days
from smartstock.inventory.lead_time import DemandSample
from smartstock.inventory.phased import MAX_PERIODS, phased_plan
from smartstock.inventory.policy import DemandEstimate, compute_policy, demand_from_sales
from smartstock.store.db import utcnow
from smartstock.store.sales import last_sale, sale_days, sales_series
from smartstock.store.skus import effective_policy
from smartstock.store.stock import levels

HISTORY_WINDOW_DAYS = 365

# Every key a consumer reads from {base}/inventory/<sku} (Home Assistant templates: on_hand,
# reorder_point, days_of_cover); all are always present, null when unknown.
PAYLOAD_KEYS = ("sku", "as_of", "on_hand", "demand_per_day", "demand_std_per_day", "demand_basis", "demand_source",
                "model", "forecast", "forecast_total", "forecast_freq", "eoq", "lot_size", "order_quantity",
                "lot_model", "safety_stock", "reorder_point", "order_up_to", "days_of_cover", "reorder_now",
                "defect_rate", "annual_cost", "order_cost", "holding_cost", "unit_cost", "lead_time_days",
                "service_level", "service_type", "safety_stock_basis", "last_sale", "history_end", "stale",
                "stale_reason", "data_gap", "horizon", "error")
HORIZON_KEYS = ("start", "demand", "eoq", "order_quantity", "safety_stock", "reorder_point", "projected_on_hand",
                "order_total", "first_order_day")


def window_from_store(conn: sqlite3.Connection, forecast: ForecastConfig, today: dt.date | None = None
                      ) -> HistoryWindow:
    """The sales window every SKU's forecast and plan use (data gaps measured over all SKUs)."""
    return history_window(sale_days(conn), today=today or dt.datetime.now(dt.timezone.utc).date(),
                          max_gap_days=max_gap_days(forecast))


def latest_run(conn: sqlite3.Connection, sku: str) -> dict[str, Any] | None:
    """The SKU's newest forecast run with its demand estimate and forecast rows, or None when there is
    none, it predates the demand record, or sales were imported after it ran (it is out of date)."""
    row = conn.execute("SELECT id, created_at, model, freq, metrics_json FROM forecast_runs WHERE sku = ? "
                       "ORDER BY id DESC LIMIT 1", (sku,)).fetchone()
    if row is None or not row[4]:
        return None
    newest_sale = conn.execute("SELECT MAX(imported_at) FROM sales WHERE sku = ?", (sku,)).fetchone()[0]
    if newest_sale is not None and newest_sale > row[1]:
        return None
    try:
        meta = json.loads(row[4])
        d = meta["demand"]
        demand = DemandEstimate(float(d["mean_per_day"]), float(d["std_per_day"]), str(d["source"]))
    except (KeyError, TypeError, ValueError, InvalidParameter):
        return None
    rows = conn.execute("SELECT date, forecast FROM forecasts WHERE run_id = ? ORDER BY date", (row[0],)).fetchall()
    return {"id": int(row[0]), "model": str(row[2]), "freq": str(row[3]), "demand": demand,
            "demand_class": meta.get("demand_class"), "dates": [dt.date.fromisoformat(r[0]) for r in rows],
            "forecast": [float(r[1]) for r in rows]}


def plan_sku(conn: sqlite3.Connection, config: Config, sku: str, *, window: HistoryWindow | None = None,
             today: dt.date | None = None, history_days: int = HISTORY_WINDOW_DAYS,
             strict: bool = False) -> dict[str, Any]:
    """The plan of one SKU now. Problems (no demand to plan from, bad inputs) land in `error`, or are
    raised with `strict` (the CLI: exit code and hint)."""
    window = window or window_from_store(conn, config.forecast, today)
    stock = levels(conn, sku).get(sku, {})
    on_hand = float(stock.get("on_hand", 0.0))
    p = float(stock.get("defect_rate", 0.0))
    plan: dict[str, Any] = {k: None for k in PAYLOAD_KEYS}
    ls = last_sale(conn, sku)
    plan.update(sku=sku, as_of=utcnow(), on_hand=on_hand, defect_rate=p, last_sale=ls.isoformat() if ls else None,
                reorder_now=False, horizon=[], notes=[], **window.to_dict())
    try:
        policy = effective_policy(config.inventory, conn, sku)
        plan.update(order_cost=policy.order_cost, holding_cost=policy.holding_cost, unit_cost=policy.unit_cost,
                    lead_time_days=policy.lead_time_days, service_level=policy.service_level,
                    service_type=policy.service_type)
        run = latest_run(conn, sku)
        series = sales_series(conn, sku, start=window.start, end=window.end)
        if run is not None:
            demand = run["demand"]
            basis = f"forecast:{run['model']}"
            per = DAYS_PER_BUCKET.get(run["freq"], 7.0)
            plan.update(model=run["model"], forecast_run=run["id"], forecast_freq=run["freq"],
                        demand_class=run["demand_class"], forecast_total=float(sum(run["forecast"])),
                        forecast=[v / per for v in run["forecast"]])
        elif series:
            demand = demand_from_sales(series, window_days=history_days, end=window.end)
            basis = f"history:{_days(demand)} days"
        elif policy.annual_demand is not None:
            demand = DemandEstimate(policy.annual_demand / config.inventory.days_per_year, 0.0,
                                    "config:annual_demand")
            basis = "config:annual_demand"
        else:
            raise ConfigError(f"SKU {sku}: no sales history and no annual_demand to base the policy on",
                              hint=f"import sales (`smartstock sales import FILE.csv`) or set one: "
                                   f"`smartstock sku set {sku} --annual-demand N`")
        sample = demand_sample(series, run["freq"] if run is not None else config.forecast.freq, window.end)
        demand = dataclasses.replace(demand, sample=sample)
        try:
            res = compute_policy(policy, demand, defect_rate=p, on_hand=on_hand,
                                 days_per_year=config.inventory.days_per_year)
        except InvalidParameter as e:
            raise InvalidParameter(f"SKU {sku}: {e.args[0]}", hint=e.hint) from None
        plan.update(res.to_dict())
        plan.update(demand_basis=basis, source=demand.source)
        if run is not None and run["forecast"]:
            per = DAYS_PER_BUCKET.get(run["freq"], 7.0)
            plan["horizon"] = phased_plan(policy, run["dates"], run["forecast"], [per] * len(run["forecast"]),
                                          demand.std_per_day, on_hand=on_hand, defect_rate=p,
                                          days_per_year=config.inventory.days_per_year, basis=basis,
                                          sample=sample)
    except SmartStockError as e:
        if strict:
            raise
        plan["error"] = str(e)
    if window.stale:
        plan["notes"] = [f"stale sales: {window.reason}", *plan.get("notes", [])]
    return plan


def demand_sample(series: list[tuple[dt.date, float]], freq: str, end: dt.date | None) -> DemandSample | None:
    """The SKU's recent demand per `freq` bucket (inside the history window), for the lead-time demand of
    intermittent SKUs (`smartstock.inventory.lead_time`); None without sales."""
    if not series or end is None or freq not in DAYS_PER_BUCKET:
        return None
    _, y = bucket_daily(series, freq, end)
    return DemandSample.of(y, DAYS_PER_BUCKET[freq]) if len(y) else None


def plans_from_store(conn: sqlite3.Connection, config: Config, skus: list[str] | None = None, *,
                     today: dt.date | None = None) -> list[dict[str, Any]]:
    """Plans of `skus` (default: every camera's SKU, every SKU with stock, sales or a forecast), sorted."""
    window = window_from_store(conn, config.forecast, today)
    if skus is None:
        found = {r[0] for r in conn.execute("SELECT DISTINCT sku FROM sales UNION SELECT DISTINCT sku FROM "
                                            "stock_movements UNION SELECT DISTINCT sku FROM forecast_runs")}
        skus = sorted({*config.camera_skus(), *found})
    return [plan_sku(conn, config, s, window=window) for s in skus]


def payload_fields(plan: dict[str, Any]) -> dict[str, Any]:
    """The `{base}/inventory/<sku>` fields: every PAYLOAD_KEYS key (null when unknown), the horizon cut
    to MAX_PERIODS rows of HORIZON_KEYS, so the retained message stays small whatever the config says."""
    out = {k: plan.get(k) for k in PAYLOAD_KEYS}
    out["horizon"] = [{k: row.get(k) for k in HORIZON_KEYS} for row in (plan.get("horizon") or [])[:MAX_PERIODS]]
    if isinstance(out["forecast"], list):
        out["forecast"] = out["forecast"][:MAX_PERIODS]
    for k, v in out.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None
    return out


def money(v: float | None) -> str:
    """A cost with its real precision: cents always, two significant digits below a cent (0.0035)."""
    if v is None or not math.isfinite(v):
        return "-"
    if v != 0 and abs(v) < 0.01:
        return f"{v:.2g}"
    return f"{v:,.2f}"


def _days(demand: DemandEstimate) -> int:
    """n of `sales:<n>d` (demand_from_sales' source)."""
    text = demand.source.split(":", 1)[-1].rstrip("d")
    return int(text) if text.isdigit() else 0
