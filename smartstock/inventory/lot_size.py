"""How much to order or produce at once: EOQ, its cost curve, EOQ with planned backorders, EPQ, lot-for-lot.

Units: demand D and production rate P in units per year, order/set-up cost S per order, holding cost H
and backorder cost B per unit per year. Any other time unit works if every rate uses the same one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from smartstock.errors import InvalidParameter
from smartstock.inventory._check import finite, non_negative, positive

_H_FIX = "holding cost is per unit per year and must be positive (e.g. 20% of the unit cost)"


def eoq(demand: float, order_cost: float, holding_cost: float) -> float:
    """Economic order quantity Q* = sqrt(2 D S / H) [units].

    Balances the ordering cost D/Q * S against the cycle holding cost Q/2 * H (Harris 1913).
    Zero demand or zero order cost gives 0 (order exactly what is needed: lot-for-lot / JIT).
    """
    d = non_negative("demand", demand, "demand is units per year; returns are not negative demand")
    s = non_negative("order_cost", order_cost)
    h = positive("holding_cost", holding_cost, _H_FIX)
    return math.sqrt(2.0 * d * s / h)


@dataclass(frozen=True)
class LotCost:
    """Annual cost of ordering Q at a time: ordering + holding (+ purchase when unit_cost is given)."""

    quantity: float
    ordering: float
    holding: float
    purchase: float
    total: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def total_cost(quantity: float, demand: float, order_cost: float, holding_cost: float,
               unit_cost: float = 0.0) -> LotCost:
    """Annual cost TC(Q) = D/Q * S + Q/2 * H + D * c [currency per year]."""
    q = positive("quantity", quantity, "order quantity must be at least one unit")
    d = non_negative("demand", demand)
    s = non_negative("order_cost", order_cost)
    h = positive("holding_cost", holding_cost, _H_FIX)
    c = non_negative("unit_cost", unit_cost)
    ordering, holding, purchase = d / q * s, q / 2.0 * h, d * c
    return LotCost(q, ordering, holding, purchase, ordering + holding + purchase)


def total_cost_curve(demand: float, order_cost: float, holding_cost: float,
                     quantities: Iterable[float], unit_cost: float = 0.0) -> list[LotCost]:
    """TC(Q) for each Q in `quantities` (for plots: the flat bottom shows how forgiving EOQ is)."""
    return [total_cost(q, demand, order_cost, holding_cost, unit_cost) for q in quantities]


@dataclass(frozen=True)
class BackorderLot:
    """EOQ with planned shortages: order quantity, largest backlog, largest stock and annual cost."""

    order_quantity: float
    max_backorder: float
    max_inventory: float
    annual_cost: float
    stockout_fraction: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def eoq_backorders(demand: float, order_cost: float, holding_cost: float, backorder_cost: float) -> BackorderLot:
    """EOQ when customers wait for backordered units at cost B per unit per year.

    Q* = sqrt(2 D S / H * (H + B) / B); largest backlog b* = Q* H / (H + B); largest stock Q* - b*;
    annual cost = sqrt(2 D S H * B / (H + B)); fraction of the cycle out of stock = H / (H + B).
    As B grows the result tends to the plain EOQ (backorders become too expensive to plan).
    """
    d = non_negative("demand", demand)
    s = non_negative("order_cost", order_cost)
    h = positive("holding_cost", holding_cost, _H_FIX)
    b = positive("backorder_cost", backorder_cost, "use plain eoq() when backorders are not allowed")
    q = math.sqrt(2.0 * d * s / h * (h + b) / b)
    backlog = q * h / (h + b)
    return BackorderLot(q, backlog, q - backlog, math.sqrt(2.0 * d * s * h * b / (h + b)), h / (h + b))


@dataclass(frozen=True)
class ProductionLot:
    """Economic production quantity with its largest stock and annual cost."""

    order_quantity: float
    max_inventory: float
    annual_cost: float
    run_fraction: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def epq(demand: float, order_cost: float, holding_cost: float, production_rate: float) -> float:
    """Economic production quantity Q* = sqrt(2 D S / (H (1 - D/P))) [units].

    For parts the line makes itself: stock builds at P - D while the run lasts, so the average stock is
    Q/2 * (1 - D/P) and the optimal run is longer than the EOQ. Needs P > D.
    """
    return epq_lot(demand, order_cost, holding_cost, production_rate).order_quantity


def epq_lot(demand: float, order_cost: float, holding_cost: float, production_rate: float) -> ProductionLot:
    """EPQ with its largest stock Q (1 - D/P), annual cost sqrt(2 D S H (1 - D/P)) and share of time producing D/P."""
    d = non_negative("demand", demand)
    s = non_negative("order_cost", order_cost)
    h = positive("holding_cost", holding_cost, _H_FIX)
    p = positive("production_rate", production_rate, "production rate is units per year the line can make")
    if p <= d:
        raise InvalidParameter(f"production_rate ({p:g}/year) must exceed demand ({d:g}/year) for EPQ: "
                               "the line cannot keep up; raise production_rate, add capacity, or set it to 0 "
                               "to treat the part as bought in")
    rho = 1.0 - d / p
    q = math.sqrt(2.0 * d * s / (h * rho))
    return ProductionLot(q, q * rho, math.sqrt(2.0 * d * s * h * rho), d / p)


def lot_for_lot(requirements: Sequence[float], on_hand: float = 0.0) -> list[float]:
    """Lot-for-lot (JIT) planned orders: each period orders exactly its net requirement.

    Net requirement_t = max(0, gross_t - stock left), stock left starting at `on_hand`. No cycle stock is
    carried, so holding cost is minimal and every non-zero period pays one order cost.
    """
    stock = non_negative("on_hand", on_hand)
    orders = []
    for i, gross in enumerate(requirements):
        g = non_negative(f"requirements[{i}]", gross)
        use = min(stock, g)
        stock -= use
        orders.append(g - use)
    return orders


def lot_for_lot_cost(requirements: Sequence[float], order_cost: float, on_hand: float = 0.0) -> float:
    """Ordering cost of a lot-for-lot plan: S times the number of periods that order anything."""
    s = non_negative("order_cost", order_cost)
    return s * sum(1 for q in lot_for_lot(requirements, on_hand) if q > 0)


def orders_per_year(demand: float, quantity: float) -> float:
    """D / Q orders per year (0 when nothing is ordered)."""
    q = finite("quantity", quantity)
    return non_negative("demand", demand) / q if q > 0 else 0.0
