"""Inventory maths: pure functions with the formulas in their docstrings, and the per-SKU policy.

`lot_size` (how much: EOQ, EPQ, backorders, lot-for-lot), `service` (when: safety stock, reorder
point, fill rate, order-up-to, yield, cover), `policy` (all of it for one SKU).
"""

from smartstock.inventory.lot_size import (
    BackorderLot, LotCost, ProductionLot, eoq, eoq_backorders, epq, epq_lot, lot_for_lot, lot_for_lot_cost,
    orders_per_year, total_cost, total_cost_curve,
)
from smartstock.inventory.policy import DemandEstimate, PolicyResult, compute_policy, demand_from_sales
from smartstock.inventory.service import (
    days_of_cover, fill_rate_safety_factor, lead_time_demand_std, normal_loss, order_up_to_level, reorder_point,
    safety_stock, safety_stock_fill_rate, yield_adjusted_quantity, yield_adjusted_reorder_point, yield_adjusted_sigma,
    z_for_service_level,
)

__all__ = [
    "BackorderLot", "DemandEstimate", "LotCost", "PolicyResult", "ProductionLot", "compute_policy", "days_of_cover",
    "demand_from_sales", "eoq", "eoq_backorders", "epq", "epq_lot", "fill_rate_safety_factor", "lead_time_demand_std",
    "lot_for_lot", "lot_for_lot_cost", "normal_loss", "order_up_to_level", "orders_per_year", "reorder_point",
    "safety_stock", "safety_stock_fill_rate", "total_cost", "total_cost_curve", "yield_adjusted_quantity",
    "yield_adjusted_reorder_point", "yield_adjusted_sigma", "z_for_service_level",
]
