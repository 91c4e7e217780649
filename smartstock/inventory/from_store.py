"""Gather one SKU's policy inputs from the store (sales history, overrides, stock, defect rate) and compute.

The only inventory module that reads the store; the formulas stay pure. Forecasting passes its own
`DemandEstimate` through `demand=` instead of the sales-history estimate.
"""

from __future__ import annotations

import sqlite3

from smartstock.config import InventoryConfig, SkuPolicy
from smartstock.errors import ConfigError, InvalidParameter
from smartstock.inventory.policy import DemandEstimate, PolicyResult, compute_policy, demand_from_sales
from smartstock.store.sales import sales_series
from smartstock.store.skus import effective_policy
from smartstock.store.stock import levels

DEFAULT_WINDOW_DAYS = 365


def demand_for_sku(conn: sqlite3.Connection, policy: SkuPolicy, sku: str, *,
                   inventory: InventoryConfig | None = None,
                   window_days: int | None = DEFAULT_WINDOW_DAYS) -> DemandEstimate:
    """Demand from the SKU's latest stored forecast (if no sales arrived since it ran), else from its
    sales history (last `window_days`), else the policy's `annual_demand`."""
    forecast = latest_forecast_demand(conn, sku)
    if forecast is not None:
        return forecast
    series = sales_series(conn, sku)
    if series:
        return demand_from_sales(series, window_days=window_days)
    if policy.annual_demand is not None:
        dpy = inventory.days_per_year if inventory is not None else 365.0
        return DemandEstimate(policy.annual_demand / dpy, 0.0, "config:annual_demand")
    raise ConfigError(f"SKU {sku}: no sales history and no annual_demand to base the policy on",
                     hint=f"import sales (`smartstock sales import FILE.csv`) or set one: "
                          f"`smartstock sku set {sku} --annual-demand N`")


def latest_forecast_demand(conn: sqlite3.Connection, sku: str) -> DemandEstimate | None:
    """The demand estimate recorded with the SKU's newest forecast run (mean from the forecast, std from
    its backtest errors), or None when there is none or sales were imported after it ran."""
    from smartstock.inventory.plan import latest_run

    run = latest_run(conn, sku)
    return run["demand"] if run is not None else None


def sku_policy(conn: sqlite3.Connection, inventory: InventoryConfig, sku: str, *,
               demand: DemandEstimate | None = None,
               window_days: int | None = DEFAULT_WINDOW_DAYS) -> tuple[SkuPolicy, PolicyResult]:
    """(effective policy inputs, computed figures) using the measured defect rate and stock on hand."""
    policy = effective_policy(inventory, conn, sku)
    if demand is None:
        demand = demand_for_sku(conn, policy, sku, inventory=inventory, window_days=window_days)
    stock = levels(conn, sku).get(sku, {})
    try:
        return policy, compute_policy(policy, demand, defect_rate=stock.get("defect_rate", 0.0),
                                      on_hand=stock.get("on_hand", 0.0), days_per_year=inventory.days_per_year)
    except InvalidParameter as e:
        raise InvalidParameter(f"SKU {sku}: {e.args[0]}", hint=e.hint) from None
