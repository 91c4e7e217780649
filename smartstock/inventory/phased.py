"""Time-phased plan: lot, safety stock and reorder point per upcoming period, from the forecast.

A single reorder point from the mean demand of the horizon orders too late for a seasonal peak: the
stock that must last until an order placed now arrives has to cover the demand of the *coming* lead
time. So, for each day t of the horizon, the reorder point covers the forecast demand of [t, t + L)
(the forecast per period spread evenly over its days, the last period carried on past the horizon)
plus the safety stock, through `compute_policy` (the same formulas as the current plan). A projection
with continuous review then shows when orders are placed: the reorder point rises a lead time
before the peak, so the order is placed ahead of it.

Projection rules: orders due arrive at the start of a day; the day's forecast demand is consumed; at
the end of the day, while the inventory position is at or below that day's reorder point, one
order of the period's start quantity is placed (arriving L days later, lead time rounded up).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from smartstock.config import SkuPolicy
from smartstock.inventory.lead_time import DemandSample
from smartstock.inventory.policy import DemandEstimate, compute_policy

MAX_PERIODS = 26  # periods kept in a plan (and on MQTT): half a year of weeks, two years of months
MAX_ORDERS_PER_DAY = 20


def phased_plan(policy: SkuPolicy, starts: Sequence[dt.date], demand: Sequence[float], days_per_period: Sequence[float],
                std_per_day: float, *, on_hand: float, defect_rate: float, days_per_year: float = 365.0,
                basis: str = "forecast", sample: DemandSample | None = None) -> list[dict[str, Any]]:
    """One row per upcoming period: start, demand (units in the period), demand per day, EOQ, lot and
    start quantity (yield-adjusted), safety stock and reorder point at the period's start, projected
    on hand at its start and the orders the projection places in it. With `sample` (recent demand per
    bucket) an intermittent SKU's safety stock comes from its empirical lead-time demand, scaled to
    each period's rate, as in the current plan."""
    n = min(len(starts), len(demand), len(days_per_period), MAX_PERIODS)
    if n == 0:
        return []
    rate: list[float] = []  # forecast demand per day, day by day over the horizon
    first_day: list[int] = []
    for k in range(n):
        days = max(1, int(round(days_per_period[k])))
        first_day.append(len(rate))
        rate += [max(0.0, float(demand[k])) / days_per_period[k]] * days
    lead = policy.lead_time_days
    lead_days = int(math.ceil(lead))

    def lead_rate(t: int) -> float:
        """Mean forecast demand per day over [t, t + L) (the day's own rate when L = 0)."""
        if lead_days <= 0:
            return rate[min(t, len(rate) - 1)]
        window = [rate[min(i, len(rate) - 1)] for i in range(t, t + lead_days)]
        return sum(window) / len(window)

    p = defect_rate

    def at(t: int, own: float) -> tuple[Any, Any]:
        """(policy for the lead-time window from day t, policy for demand `own` per day) via compute_policy."""
        window = compute_policy(policy, DemandEstimate(lead_rate(t), std_per_day, basis, sample), defect_rate=p,
                                on_hand=0.0, days_per_year=days_per_year)
        period = compute_policy(policy, DemandEstimate(own, std_per_day, basis, sample), defect_rate=p, on_hand=0.0,
                                days_per_year=days_per_year)
        return window, period

    # daily projection
    cache: dict[tuple[float, float], tuple[Any, Any]] = {}
    stock, pipeline = float(on_hand), {}  # pipeline: arrival day -> quantity
    on_hand_start: list[float] = []
    orders: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    k = 0
    for t in range(len(rate)):
        while k + 1 < n and t >= first_day[k + 1]:
            k += 1
        stock += pipeline.pop(t, 0.0)
        if t == first_day[k]:
            on_hand_start.append(stock)  # after the day's arrivals, before its demand
        stock -= rate[t]
        key = (round(lead_rate(t), 9), round(rate[t], 9))
        if key not in cache:
            cache[key] = at(t, rate[t])
        window, period = cache[key]
        position = stock + sum(pipeline.values())
        placed = 0
        qty = max(period.order_quantity, window.order_quantity)  # a quiet period before a peak still orders
        while qty > 0 and position <= window.reorder_point and placed < MAX_ORDERS_PER_DAY:
            due = t + max(lead_days, 0)
            if due == t:
                stock += qty
            else:
                pipeline[due] = pipeline.get(due, 0.0) + qty
            position += qty
            orders[k].append((t, qty))
            placed += 1
    rows = []
    for k in range(n):
        t = first_day[k]
        window, period = cache[(round(lead_rate(t), 9), round(rate[t], 9))]
        placed = orders[k]
        rows.append({
            "start": starts[k].isoformat(), "demand": float(demand[k]), "demand_per_day": rate[t],
            "lead_time_demand": window.demand_per_day * lead, "eoq": period.eoq, "lot_size": period.lot_size,
            "order_quantity": period.order_quantity, "safety_stock": window.safety_stock,
            "reorder_point": window.reorder_point, "projected_on_hand": on_hand_start[k],
            "orders": len(placed), "order_total": sum(q for _, q in placed),
            "first_order_day": (starts[k] + dt.timedelta(days=placed[0][0] - t)).isoformat() if placed else None,
        })
    return rows
