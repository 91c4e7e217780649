"""Forecast combination: the median or mean of ETS, Theta and ARIMA.

Combining a few different, reasonable models is the most reliable lesson of the M competitions
(Makridakis et al.; the 'SHD'/'comb' benchmarks): errors of the members partly cancel.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from smartstock.forecasting.base import REGISTRY, Forecaster, ForecasterConfig, register


def combine_point(means: list[np.ndarray], method: str) -> np.ndarray:
    """The combined point forecast: median or mean of the members, step by step (the one rule for
    `ensemble`, `combo` and the backtest's ensemble)."""
    m = np.vstack(means)
    return np.median(m, axis=0) if method == "median" else np.mean(m, axis=0)


def combine(means: list[np.ndarray], sigmas: list[np.ndarray], method: str) -> tuple[np.ndarray, np.ndarray]:
    """Combined mean and a conservative sigma (mean of the members' sigmas: their errors are highly correlated)."""
    return combine_point(means, method), np.mean(np.vstack(sigmas), axis=0)


class EnsembleConfig(ForecasterConfig):
    type: Literal["ensemble"] = "ensemble"
    members: list[str] = Field(default_factory=lambda: ["ets", "theta"],
                               description="Aliases of the combined models (adding arima costs 5x the time and "
                                           "did not help on M3)")
    method: Literal["mean", "median"] = Field("mean", description="How the member forecasts are combined")


@register
class Ensemble(Forecaster):
    """Combination of member forecasters fitted on the same history."""

    Config = EnsembleConfig

    def _fit(self, y: np.ndarray) -> None:
        self._members = [REGISTRY[a](season_length=self.season_length).fit(y) for a in self.config.members]

    def _predict(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        parts = [m._predict(h) for m in self._members]
        return combine([p[0] for p in parts], [p[1] for p in parts], self.config.method)
