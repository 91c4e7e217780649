"""Benchmarks every other model must beat: naive, seasonal naive, moving average."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from smartstock.forecasting.base import Forecaster, ForecasterConfig, register, residual_sigma


class NaiveConfig(ForecasterConfig):
    type: Literal["naive"] = "naive"


@register
class Naive(Forecaster):
    """Last value carried forward; random-walk intervals widen with sqrt(h)."""

    Config = NaiveConfig

    def _fit(self, y: np.ndarray) -> None:
        self._last = float(y[-1])
        self._sigma = residual_sigma(np.diff(y))

    def _predict(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        return np.full(h, self._last), self._sigma * np.sqrt(np.arange(1, h + 1))


class SeasonalNaiveConfig(ForecasterConfig):
    type: Literal["seasonal-naive"] = "seasonal-naive"


@register
class SeasonalNaive(Forecaster):
    """Value of the same period one season ago; falls back to naive when there is less than a season."""

    Config = SeasonalNaiveConfig

    def _fit(self, y: np.ndarray) -> None:
        m = self.season_length if len(y) > self.season_length else 1
        self._m = m
        self._last_season = y[-m:].copy()
        self._sigma = residual_sigma(y[m:] - y[:-m]) if len(y) > m else 0.0

    def _predict(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        m = self._m
        last = self._last_season
        steps = np.arange(h)
        mean = last[steps % m]
        return mean, self._sigma * np.sqrt(steps // m + 1)


class MovingAverageConfig(ForecasterConfig):
    type: Literal["moving-average"] = "moving-average"
    window: int = Field(0, ge=0, le=1000, description="Points averaged (0 = one season, at least 3)")


@register
class MovingAverage(Forecaster):
    """Flat mean of the last `window` points: a robust choice for noisy, level demand."""

    Config = MovingAverageConfig

    def _fit(self, y: np.ndarray) -> None:
        k = self.config.window or max(3, self.season_length)
        k = min(k, len(y))
        self._k = k
        self._level = float(np.mean(y[-k:]))
        # one-step errors of the rolling mean over the history (where a full window exists)
        if len(y) > k:
            c = np.cumsum(np.r_[0.0, y])
            prev = (c[k:-1] - c[:-k - 1]) / k
            self._sigma = residual_sigma(y[k:] - prev)
        else:
            self._sigma = float(np.std(y))

    def _predict(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        return np.full(h, self._level), np.full(h, self._sigma * np.sqrt(1.0 + 1.0 / self._k))
