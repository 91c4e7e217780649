"""Which stretch of the store's sales history a plan may use (the rule: `smartstock.forecasting.gaps`).

Data gaps (a stretch of more than `forecast.gap_periods` periods in which no SKU sold anything) are
missing data, not zero demand; the store query is `smartstock.store.sales.sale_days`.
"""

from __future__ import annotations

from smartstock.config import ForecastConfig
from smartstock.forecasting.gaps import HistoryWindow, history_window
from smartstock.forecasting.io import DAYS_PER_BUCKET

__all__ = ["HistoryWindow", "history_window", "max_gap_days"]


def max_gap_days(forecast: ForecastConfig) -> float:
    """`forecast.gap_periods` in days."""
    return forecast.gap_periods * DAYS_PER_BUCKET[forecast.freq]
