"""Demand classification (Syntetos & Boylan, 2005) and the rules for awkward histories.

ADI (average inter-demand interval) and CV^2 (squared coefficient of variation of the non-zero
sizes) split demand into smooth, erratic, intermittent and lumpy; the class decides which models
`auto` considers (Croston-type models only make sense with many zero buckets).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

DemandClass = Literal["smooth", "erratic", "intermittent", "lumpy", "empty"]
ADI_CUT = 1.32
CV2_CUT = 0.49


def adi_cv2(y: np.ndarray) -> tuple[float, float]:
    """(ADI, CV^2) of a bucketed demand history; ADI is inf without demand."""
    y = np.asarray(y, float)
    nz = y[y > 0]
    if len(nz) == 0:
        return float("inf"), 0.0
    adi = len(y) / len(nz)
    cv2 = float((np.std(nz) / np.mean(nz)) ** 2) if len(nz) > 1 else 0.0
    return float(adi), cv2


def classify(y: np.ndarray) -> DemandClass:
    adi, cv2 = adi_cv2(y)
    if not np.isfinite(adi):
        return "empty"
    if adi < ADI_CUT:
        return "smooth" if cv2 < CV2_CUT else "erratic"
    return "intermittent" if cv2 < CV2_CUT else "lumpy"


CONTINUOUS = ("naive", "seasonal-naive", "ets", "theta", "ensemble")  # arima: 5x the time, no gain on M3
INTERMITTENT = ("croston-mix", "sba", "croston", "tsb")  # the Croston family; naive would forecast 0 or a spike


def is_intermittent(demand_class: DemandClass) -> bool:
    """Classes forecast by the Croston family (many zero buckets, or no demand at all)."""
    return demand_class in ("intermittent", "lumpy", "empty")


def candidates(demand_class: DemandClass, n: int, season_length: int) -> list[str]:
    """Models `auto` backtests for a history of this class and length."""
    if is_intermittent(demand_class):
        return list(INTERMITTENT)
    out = list(CONTINUOUS)
    if season_length <= 1 or n <= season_length:
        out.remove("seasonal-naive")
    return out


def default_model(demand_class: DemandClass, n: int) -> str:
    """The model used when the history is too short to backtest."""
    if demand_class in ("intermittent", "lumpy", "empty"):
        return "sba" if n >= 2 else "naive"
    return "theta" if n >= 4 else "naive"
