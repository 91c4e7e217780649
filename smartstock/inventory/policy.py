"""One SKU's inventory policy from its inputs: lot size, start quantity, safety stock, reorder point, cover.

The interface other parts code against (forecasting supplies a `DemandEstimate`, the edge service and
the CLI call `compute_policy`) is deliberately small: a demand estimate per day, the SKU's `SkuPolicy`
from the config/store, the measured defect rate and the stock on hand.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from smartstock.config import SkuPolicy
from smartstock.errors import InvalidParameter
from smartstock.inventory import lot_size as ls
from smartstock.inventory import service as sv
from smartstock.inventory._check import defect_rate as check_defect_rate
from smartstock.inventory._check import finite, non_negative
from smartstock.inventory.lead_time import DemandSample, Empirical, empirical


@dataclass(frozen=True)
class DemandEstimate:
    """Expected demand per day and its day-to-day standard deviation, with where it came from.

    `source` is free text for people ("sales:365d", "forecast:ets", "config:annual_demand"). `sample`,
    the recent demand per bucket, lets `compute_policy` use an empirical lead-time demand when demand is
    intermittent or lumpy (`smartstock.inventory.lead_time`); without it the normal model is used.
    """

    mean_per_day: float
    std_per_day: float
    source: str
    sample: DemandSample | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        non_negative("mean_per_day", self.mean_per_day, "demand cannot be negative")
        non_negative("std_per_day", self.std_per_day)

    def to_dict(self) -> dict[str, Any]:
        return {"mean_per_day": self.mean_per_day, "std_per_day": self.std_per_day, "source": self.source}


def _as_date(value: dt.date | str) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def demand_from_sales(daily: Iterable[tuple[dt.date | str, float]], *, window_days: int | None = None,
                      end: dt.date | str | None = None) -> DemandEstimate:
    """Mean and standard deviation of demand per day from a sales history.

    Days without a sale count as 0 (a missing day in a sales export means nothing was sold). The
    window runs from the first sale (or `window_days` before `end`) to `end` (default: the last sale).
    Several rows on one day are summed. The std is the sample std (n - 1), 0 for a single day.
    """
    by_day: dict[dt.date, float] = {}
    for day, qty in daily:
        d = _as_date(day)
        by_day[d] = by_day.get(d, 0.0) + finite("quantity", qty)
    if not by_day:
        raise InvalidParameter("no sales history to estimate demand from",
                               hint="import sales (`smartstock sales import FILE.csv`) or set annual_demand for the SKU")
    last = _as_date(end) if end is not None else max(by_day)
    first = min(by_day)
    if window_days is not None:
        if window_days < 1:
            raise InvalidParameter(f"window_days must be >= 1, got {window_days}")
        first = max(first, last - dt.timedelta(days=window_days - 1))
    n = (last - first).days + 1
    if n < 1:
        raise InvalidParameter(f"end {last} is before the first sale {first}")
    total = sum(q for d, q in by_day.items() if first <= d <= last)
    mean = total / n
    sq = sum((q - mean) ** 2 for d, q in by_day.items() if first <= d <= last)
    sq += (n - sum(1 for d in by_day if first <= d <= last)) * mean * mean  # the zero days
    std = math.sqrt(sq / (n - 1)) if n > 1 else 0.0
    return DemandEstimate(mean, std, f"sales:{n}d")


@dataclass
class PolicyResult:
    """Figures of one SKU's policy. Quantities in units, cost per year, cover in days."""

    eoq: float
    order_quantity: float
    safety_stock: float
    reorder_point: float
    order_up_to: float | None
    days_of_cover: float
    annual_cost: float
    epq: float | None
    lot_size: float
    lot_model: str
    annual_demand: float
    demand_per_day: float
    demand_std_per_day: float
    demand_source: str
    safety_stock_basis: str  # "normal" or "empirical:..." (how the lead-time demand was modelled)
    defect_rate: float
    on_hand: float
    reorder_now: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: infinite days of cover (no demand) becomes None."""
        out = asdict(self)
        if not math.isfinite(out["days_of_cover"]):
            out["days_of_cover"] = None
        return out


def compute_policy(policy: SkuPolicy, demand: DemandEstimate, *, defect_rate: float = 0.0, on_hand: float = 0.0,
                   days_per_year: float = 365.0) -> PolicyResult:
    """Lot size (EOQ, EPQ when the line makes the part, EOQ with backorders when they are allowed),
    yield-adjusted start quantity Q / (1 - p), safety stock and reorder point for the service target
    (cycle service level or fill rate; with lead-time variability and scrap), order-up-to level for
    periodic review, days of cover and annual cost (ordering + cycle and safety stock holding).
    """
    p = check_defect_rate(defect_rate)
    stock = finite("on_hand", on_hand)
    dpy = non_negative("days_per_year", days_per_year)
    d_day, sd_day = demand.mean_per_day, demand.std_per_day
    annual = d_day * dpy
    s, h = policy.order_cost, policy.holding_cost
    lt, slt = policy.lead_time_days, policy.lead_time_std_days
    notes: list[str] = []

    q_eoq = ls.eoq(annual, s, h)
    q_epq: float | None = None
    if policy.production_rate > 0:
        prod = ls.epq_lot(annual, s, h, policy.production_rate)
        q_epq, lot, model = prod.order_quantity, prod.order_quantity, "epq"
        cycle_cost = prod.annual_cost
    elif policy.backorder_cost > 0:
        bo = ls.eoq_backorders(annual, s, h, policy.backorder_cost)
        lot, model, cycle_cost = bo.order_quantity, "eoq_backorders", bo.annual_cost
        notes.append(f"planned backorders up to {bo.max_backorder:.1f} units per cycle")
    else:
        lot, model = q_eoq, "eoq"
        cycle_cost = ls.total_cost(lot, annual, s, h).total if lot > 0 else 0.0
    if annual == 0:
        notes.append("no demand: nothing to order")
    elif lot == 0:
        model = "lot_for_lot"
        notes.append("order cost 0: lot-for-lot (order exactly what each period needs)")

    order_qty = sv.yield_adjusted_quantity(lot, p)
    if p > 0:
        notes.append(f"defect rate {p:.1%}: start {order_qty:.1f} to get {lot:.1f} good")
    review = policy.review_period_days
    bucket = demand.sample.bucket_days if demand.sample is not None else 0.0
    emp = empirical(demand.sample, d_day, lt + max(review, bucket))
    if emp is not None:
        ss, rop = _empirical_ss(emp, policy, d_day, lt, slt, p, lot)
        basis = emp.basis
        notes.append(f"intermittent demand: safety stock from the history's demand over lead time + review "
                     f"({emp.periods:.3g} buckets), not a normal quantile")
    else:
        sigma = sv.yield_adjusted_sigma(d_day, sd_day, lt, slt, p)
        if policy.service_type == "fill_rate":
            ss = sv.safety_stock_fill_rate(policy.service_level, lot, sigma) if lot > 0 else 0.0
        else:
            ss = sv.z_for_service_level(policy.service_level) * sigma
        rop = d_day * lt / (1.0 - p) + ss
        basis = "normal"

    up_to: float | None = None
    if review > 0:
        z = sv.z_for_service_level(policy.service_level)
        risk = review + lt
        emp_r = emp if emp is not None and review >= bucket else empirical(demand.sample, d_day, risk)
        if emp_r is not None:  # as the reorder point: the quantile's excess, lead-time spread in quadrature
            extra = max(0.0, emp_r.quantile(policy.service_level) - d_day * risk)
            if slt > 0:
                extra = math.hypot(extra, z * d_day * slt)
            up_to = (d_day * risk + extra) / (1.0 - p)
        else:
            up_to = d_day * risk / (1.0 - p) + z * sv.yield_adjusted_sigma(d_day, sd_day, risk, slt, p)
        notes.append(f"periodic review every {review:g} days: order up to {up_to:.1f}")

    cover = sv.days_of_cover(stock, d_day)
    return PolicyResult(
        eoq=q_eoq, order_quantity=order_qty, safety_stock=ss, reorder_point=rop, order_up_to=up_to,
        days_of_cover=cover, annual_cost=cycle_cost + h * ss, epq=q_epq, lot_size=lot, lot_model=model,
        annual_demand=annual, demand_per_day=d_day, demand_std_per_day=sd_day, demand_source=demand.source,
        safety_stock_basis=basis, defect_rate=p, on_hand=stock, reorder_now=annual > 0 and stock <= rop, notes=notes)


def _empirical_ss(emp: Empirical, policy: SkuPolicy, d_day: float, lt: float, slt: float, p: float,
                  lot: float) -> tuple[float, float]:
    """(safety stock, reorder point) from the empirical risk-period demand: the service-level quantile
    (cycle service) or the level whose expected shortage per cycle is Q (1 - beta) (fill rate); lead-time
    variability adds z d sigma_L in quadrature; scrap scales the units to start by 1 / (1 - p)."""
    if policy.service_type == "fill_rate":
        level = emp.level_for_fill_rate(lot * (1.0 - policy.service_level)) if lot > 0 else d_day * lt
    else:
        level = emp.quantile(policy.service_level)
    ss = max(0.0, level - d_day * lt)
    if slt > 0:
        ss = math.hypot(ss, sv.z_for_service_level(policy.service_level) * d_day * slt)
    ss /= 1.0 - p
    return ss, d_day * lt / (1.0 - p) + ss
