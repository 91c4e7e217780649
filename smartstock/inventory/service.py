"""When to reorder: safety stock, reorder point, fill-rate targets, periodic review, yield, days of cover.

Units: demand d and its standard deviation sigma_d per day (per period: any period works if the lead
time L, its standard deviation sigma_L and the review period R use the same one). Demand per day is
assumed independent from day to day and normally distributed over the lead time.
Normal quantiles come from `statistics.NormalDist` (no scipy on the device).
"""

from __future__ import annotations

import math
from statistics import NormalDist

from smartstock.inventory._check import defect_rate, finite, non_negative, positive, probability_open

_N = NormalDist()


def z_for_service_level(service_level: float) -> float:
    """Safety factor z = Phi^-1(service level): the standard normal quantile of the cycle service level."""
    return _N.inv_cdf(probability_open("service_level", service_level))


def lead_time_demand_std(demand_per_day: float, demand_std_per_day: float, lead_time_days: float,
                         lead_time_std_days: float = 0.0) -> float:
    """sigma_LT = sqrt(L sigma_d^2 + d^2 sigma_L^2): spread of demand over an uncertain lead time [units]."""
    d = non_negative("demand_per_day", demand_per_day)
    sd = non_negative("demand_std_per_day", demand_std_per_day)
    lt = non_negative("lead_time_days", lead_time_days)
    slt = non_negative("lead_time_std_days", lead_time_std_days)
    return math.sqrt(lt * sd * sd + d * d * slt * slt)


def safety_stock(service_level: float, demand_per_day: float, demand_std_per_day: float, lead_time_days: float,
                 lead_time_std_days: float = 0.0) -> float:
    """Safety stock for a cycle service level (probability of no stock-out per cycle) [units].

    SS = z * sqrt(L sigma_d^2 + d^2 sigma_L^2), z = Phi^-1(service level).
    """
    z = z_for_service_level(service_level)
    return z * lead_time_demand_std(demand_per_day, demand_std_per_day, lead_time_days, lead_time_std_days)


def reorder_point(demand_per_day: float, lead_time_days: float, safety_stock_units: float) -> float:
    """ROP = d L + SS [units]: reorder when stock on hand (plus on order) falls to this level."""
    d = non_negative("demand_per_day", demand_per_day)
    lt = non_negative("lead_time_days", lead_time_days)
    return d * lt + non_negative("safety_stock", safety_stock_units)


def normal_loss(k: float) -> float:
    """Standard normal loss G(k) = phi(k) - k (1 - Phi(k)): expected units short per unit of sigma."""
    return _N.pdf(k) - k * (1.0 - _N.cdf(k))


def fill_rate_safety_factor(order_quantity: float, sigma_lead_time: float, fill_rate: float) -> float:
    """Safety factor k meeting a fill rate beta (share of demand served from stock).

    Solves G(k) = Q (1 - beta) / sigma_LT by bisection (G falls monotonically). The result can be
    negative for large orders: the cycle stock alone already serves the target.
    """
    q = positive("order_quantity", order_quantity, "fill rate needs the order quantity (e.g. the EOQ)")
    sigma = positive("sigma_lead_time", sigma_lead_time, "with no demand variability no safety stock is needed")
    beta = probability_open("fill_rate", fill_rate, "e.g. 0.98 for 98% of units served from stock")
    target = q * (1.0 - beta) / sigma
    lo, hi = -40.0, 40.0  # G(-40) ~ 40, G(40) ~ 0
    if target >= normal_loss(lo):
        return lo
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if normal_loss(mid) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


def safety_stock_fill_rate(fill_rate: float, order_quantity: float, sigma_lead_time: float) -> float:
    """Safety stock k * sigma_LT for a fill-rate target, never below zero [units]."""
    if non_negative("sigma_lead_time", sigma_lead_time) == 0.0:
        return 0.0
    return max(0.0, fill_rate_safety_factor(order_quantity, sigma_lead_time, fill_rate) * sigma_lead_time)


def order_up_to_level(service_level: float, demand_per_day: float, demand_std_per_day: float, review_period_days: float,
                      lead_time_days: float, lead_time_std_days: float = 0.0) -> float:
    """Periodic review (R, S) order-up-to level [units].

    S = d (R + L) + z sigma_d sqrt(R + L); with lead-time variability the spread term becomes
    z sqrt((R + L) sigma_d^2 + d^2 sigma_L^2). Every R days order S minus the inventory position.
    """
    r = positive("review_period_days", review_period_days, "use reorder_point() for continuous review")
    lt = non_negative("lead_time_days", lead_time_days)
    d = non_negative("demand_per_day", demand_per_day)
    z = z_for_service_level(service_level)
    return d * (r + lt) + z * lead_time_demand_std(d, demand_std_per_day, r + lt, lead_time_std_days)


def yield_adjusted_quantity(good_quantity: float, defect_rate_p: float) -> float:
    """Quantity to start so that Q good parts come out when a share p is scrapped: Q / (1 - p)."""
    q = non_negative("quantity", good_quantity)
    return q / (1.0 - defect_rate(defect_rate_p))


def yield_adjusted_sigma(demand_per_day: float, demand_std_per_day: float, lead_time_days: float,
                         lead_time_std_days: float, defect_rate_p: float) -> float:
    """Spread of the units consumed over the lead time when a share p of them is scrapped [units].

    Serving G good units needs N starts with E[N] = G / (1 - p) and Var[N | G] = G p / (1 - p)^2
    (negative binomial), so sigma_N = sqrt(sigma_LT^2 + d L p) / (1 - p).
    """
    p = defect_rate(defect_rate_p)
    sigma_lt = lead_time_demand_std(demand_per_day, demand_std_per_day, lead_time_days, lead_time_std_days)
    return math.sqrt(sigma_lt ** 2 + demand_per_day * lead_time_days * p) / (1.0 - p)


def yield_adjusted_reorder_point(service_level: float, demand_per_day: float, demand_std_per_day: float,
                                 lead_time_days: float, lead_time_std_days: float, defect_rate_p: float) -> tuple[float, float]:
    """(safety stock, reorder point) accounting for scrap [units].

    ROP = d L / (1 - p) + z sigma_N, sigma_N from `yield_adjusted_sigma`: the lead-time demand is
    covered in units started or consumed, of which p are scrapped. p = 0 gives the usual d L + SS.
    """
    z = z_for_service_level(service_level)
    p = defect_rate(defect_rate_p)
    ss = z * yield_adjusted_sigma(demand_per_day, demand_std_per_day, lead_time_days, lead_time_std_days, p)
    return ss, reorder_point(demand_per_day, lead_time_days, 0.0) / (1.0 - p) + ss


def days_of_cover(on_hand: float, demand_per_day: float) -> float:
    """How many days the stock on hand lasts: on_hand / d [days]; infinite with no demand, 0 with no stock."""
    stock = finite("on_hand", on_hand)
    d = non_negative("demand_per_day", demand_per_day)
    if stock <= 0:
        return 0.0
    return math.inf if d == 0 else stock / d
