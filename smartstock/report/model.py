"""Plain data the report is built from, so gathering (store, CSV, forecasting) and drawing stay apart."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from smartstock.report.simulate import SimulationResult


@dataclass
class BacktestWindow:
    """One rolling-origin fold: the model fitted up to `origin`, compared with what happened next."""

    origin: dt.date
    dates: list[dt.date]
    actual: list[float]
    mean: list[float]
    lo: list[float]
    hi: list[float]


@dataclass
class ForecastView:
    """History in buckets, the backtest folds and the forecast ahead, all in units per bucket."""

    model: str
    freq: str                       # D, W or M
    level: float                    # prediction interval coverage, e.g. 0.9
    dates: list[dt.date]
    history: list[float]
    windows: list[BacktestWindow] = field(default_factory=list)
    future_dates: list[dt.date] = field(default_factory=list)
    future_mean: list[float] = field(default_factory=list)
    future_lo: list[float] = field(default_factory=list)
    future_hi: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    source: str = ""                # which code produced it (smartstock.forecasting, or the fallback)


@dataclass
class PolicyView:
    """The inventory policy of one SKU as the device computes it (per-day demand, per-year costs)."""

    eoq: float
    lot_size: float                 # good units per order (EOQ, EPQ, ...); what the simulation receives
    start_quantity: float           # what to start/order so `lot_size` good units come out (yield-adjusted)
    safety_stock: float
    reorder_point: float
    demand_per_day: float
    demand_std_per_day: float
    demand_source: str
    order_cost: float
    holding_cost: float
    unit_cost: float
    lead_time_days: float
    service_level: float
    service_type: str
    on_hand: float
    on_hand_known: bool
    defect_rate: float
    annual_cost: float | None = None
    lot_model: str = "eoq"          # eoq, epq, eoq_backorders, lot_for_lot: where lot_size comes from
    notes: list[str] = field(default_factory=list)
    demand_basis: str = ""          # forecast:<model>, history:<n> days or config:annual_demand
    stale: bool = False             # the sales history ends in a data gap or stopped long ago
    stale_reason: str = ""
    horizon: list[dict[str, Any]] = field(default_factory=list)  # time-phased plan (inventory.phased rows)
    as_of: str = ""


@dataclass
class SimulationView:
    """The (s, Q) replay against actual demand and the window it covers."""

    days: list[dt.date]
    demand: list[float]
    result: SimulationResult
    policy_basis: str               # what the policy was computed from (states in/out of sample)


@dataclass
class SkuReport:
    sku: str
    days: list[dt.date]
    sales: list[float]
    forecast: ForecastView | None = None
    policy: PolicyView | None = None
    simulation: SimulationView | None = None
    problems: list[str] = field(default_factory=list)   # why a piece is missing, shown in the report


@dataclass
class Inspection:
    ts: dt.datetime
    sku: str
    label: str
    is_defect: bool


@dataclass
class ReportData:
    title: str
    generated_at: str
    sources: dict[str, str]
    skus: list[SkuReport]
    inspections: list[Inspection]
    stock: dict[str, dict[str, float]]
    model_manifest: dict[str, Any] | None
    model_evaluation: dict[str, Any] | None
    model_source: str
    defect_threshold: float
    notes: list[str] = field(default_factory=list)
