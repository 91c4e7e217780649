"""Replay an (s, Q) reorder-point policy against a demand history, one day at a time.

Why: EOQ and the reorder point come from formulas that assume a demand distribution. Replaying the
policy against the demand that really happened shows the supervisor what it would have delivered:
stock-outs, the service level achieved and what it cost. Pure function, no I/O.

Rules of the replay (continuous review, daily steps):
  1. orders due today arrive at the start of the day;
  2. today's demand is served from stock on hand; what cannot be served is lost (lost sales), or,
     with ``backorders=True``, waits as negative stock and is served first when stock arrives;
  3. at the end of the day, while the inventory position (on hand + on order) is at or below the
     reorder point s, an order of Q units is placed; it arrives ``lead_time_days`` later.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from smartstock.errors import InputError


@dataclass
class SimulationResult:
    """Day-by-day trace and the figures a supervisor asks for."""

    on_hand: list[float]            # end-of-day stock on hand (negative = backorders)
    position: list[float]           # end-of-day inventory position (on hand + on order)
    order_days: list[int]           # day index of each order placed
    arrival_days: list[int]         # day index of each order arrival
    short_days: list[int]           # days on which some demand was not served from stock
    demand_total: float
    served_total: float
    short_total: float
    orders: int
    stockout_events: int            # runs of consecutive days with unserved demand
    fill_rate: float                # served / demand (units)
    cycle_service_level: float      # replenishment cycles without any shortage / all cycles
    avg_on_hand: float
    holding_cost: float
    ordering_cost: float
    purchase_cost: float
    total_cost: float               # holding + ordering (purchase is the same for every policy)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        """The scalar figures, for the report's table."""
        return {
            "days": len(self.on_hand), "demand": self.demand_total, "served": self.served_total,
            "short": self.short_total, "orders": self.orders, "stockout_days": len(self.short_days),
            "stockout_events": self.stockout_events, "fill_rate": self.fill_rate,
            "cycle_service_level": self.cycle_service_level, "avg_on_hand": self.avg_on_hand,
            "holding_cost": self.holding_cost, "ordering_cost": self.ordering_cost,
            "purchase_cost": self.purchase_cost, "total_cost": self.total_cost,
        }


def simulate_sq(demand: Sequence[float], *, reorder_point: float, order_quantity: float, lead_time_days: float,
                initial_on_hand: float | None = None, holding_cost: float = 0.0, order_cost: float = 0.0,
                unit_cost: float = 0.0, days_per_year: float = 365.0, backorders: bool = False,
                max_orders_per_day: int = 100) -> SimulationResult:
    """Replay the (s=reorder_point, Q=order_quantity) policy on daily `demand`.

    Costs: `holding_cost` per unit per year on end-of-day stock, `order_cost` per order,
    `unit_cost` per unit ordered. `initial_on_hand` defaults to s + Q (the start of a cycle).
    The lead time is rounded up to whole days (an order never arrives sooner than planned).
    """
    if order_quantity is None or not math.isfinite(order_quantity) or order_quantity <= 0:
        raise InputError(f"simulation: order_quantity must be > 0, got {order_quantity}",
                         hint="compute the policy first (EOQ > 0 needs demand > 0)")
    if not math.isfinite(reorder_point):
        raise InputError(f"simulation: reorder_point must be finite, got {reorder_point}")
    if lead_time_days < 0 or not math.isfinite(lead_time_days):
        raise InputError(f"simulation: lead_time_days must be >= 0, got {lead_time_days}")
    for i, d in enumerate(demand):
        if not math.isfinite(d) or d < 0:
            raise InputError(f"simulation: demand on day {i} must be a finite number >= 0, got {d}")
    lead = int(math.ceil(lead_time_days))
    on_hand = float(reorder_point + order_quantity if initial_on_hand is None else initial_on_hand)
    pipeline: dict[int, float] = {}
    trace_oh: list[float] = []
    trace_pos: list[float] = []
    order_days: list[int] = []
    arrival_days: list[int] = []
    short_days: list[int] = []
    served_total = short_total = 0.0
    cycles = 0
    cycles_short = 0
    cycle_had_short = False
    for t, d in enumerate(demand):
        arriving = pipeline.pop(t, 0.0)
        if arriving:
            on_hand += arriving
            arrival_days.append(t)
            cycles += 1
            cycles_short += cycle_had_short
            cycle_had_short = False
        if backorders:
            served = min(d, max(on_hand, 0.0))
            on_hand -= d
        else:
            served = min(d, on_hand)
            on_hand -= served
        short = d - served
        served_total += served
        if short > 1e-9:
            short_total += short
            short_days.append(t)
            cycle_had_short = True
        position = on_hand + sum(pipeline.values())
        placed = 0
        while position <= reorder_point and placed < max_orders_per_day:
            due = t + max(lead, 0)
            if due == t:  # zero lead time: the order is on the shelf before tomorrow
                on_hand += order_quantity
            else:
                pipeline[due] = pipeline.get(due, 0.0) + order_quantity
            position += order_quantity
            order_days.append(t)
            placed += 1
        trace_oh.append(on_hand)
        trace_pos.append(position)
    # The cycle still running at the end counts only if it already had a shortage (it cannot recover).
    if cycle_had_short:
        cycles += 1
        cycles_short += 1
    demand_total = float(sum(demand))
    days = len(trace_oh)
    avg_oh = sum(max(x, 0.0) for x in trace_oh) / days if days else 0.0
    holding = sum(max(x, 0.0) for x in trace_oh) * holding_cost / days_per_year
    ordering = len(order_days) * order_cost
    notes = []
    if cycles == 0:
        notes.append("no replenishment cycle completed in the window: cycle service level is not measured")
    return SimulationResult(
        on_hand=trace_oh, position=trace_pos, order_days=order_days, arrival_days=arrival_days,
        short_days=short_days, demand_total=demand_total, served_total=served_total, short_total=short_total,
        orders=len(order_days), stockout_events=_runs(short_days),
        fill_rate=served_total / demand_total if demand_total > 0 else 1.0,
        cycle_service_level=(1.0 - cycles_short / cycles) if cycles else float("nan"),
        avg_on_hand=avg_oh, holding_cost=holding, ordering_cost=ordering,
        purchase_cost=len(order_days) * order_quantity * unit_cost, total_cost=holding + ordering, notes=notes)


def _runs(days: list[int]) -> int:
    """Number of runs of consecutive day indices."""
    return sum(1 for i, d in enumerate(days) if i == 0 or days[i - 1] != d - 1)
