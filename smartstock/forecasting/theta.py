"""Theta method (Assimakopoulos & Nikolopoulos, 2000), the M3 winner, in its SES-with-drift form.

Implemented here (numpy + scipy) rather than through statsmodels because it is a few lines, fast,
and needs the same seasonal test as the M3/M4 reference: seasonally adjust when the lag-m
autocorrelation is significant at 90 %, forecast with SES plus half the linear-trend slope, put
the season back.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from smartstock.forecasting.base import Forecaster, ForecasterConfig, register, residual_sigma
from smartstock.forecasting.seasonality import Season, season_for


def ses_levels(x: np.ndarray, alpha: float, level0: float) -> np.ndarray:
    """Levels l_0..l_n of simple exponential smoothing (l_t = a*x_t + (1-a)*l_{t-1}), vectorised."""
    from scipy.signal import lfilter  # lazy: scipy costs 0.6 s at import and the config imports this package

    filtered, _ = lfilter([alpha], [1.0, -(1.0 - alpha)], x, zi=[(1.0 - alpha) * level0])
    return np.r_[level0, filtered]


def fit_ses(x: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(alpha, last level, one-step residuals) minimising the sum of squared one-step errors."""
    x = np.asarray(x, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0:
        return 0.5, float(x[-1]), np.zeros(len(x))
    scale = float(np.std(x)) or 1.0

    def sse(p: np.ndarray) -> float:
        lv = ses_levels(x, p[0], p[1] * scale)
        e = (x - lv[:-1]) / scale
        return float(np.dot(e, e))

    best = None
    for a0 in (0.2, 0.7):
        from scipy.optimize import minimize

        r = minimize(sse, np.array([a0, x[0] / scale]), method="L-BFGS-B",
                     bounds=[(1e-4, 0.9999), (None, None)])
        if best is None or r.fun < best.fun:
            best = r
    alpha, level0 = float(best.x[0]), float(best.x[1] * scale)
    lv = ses_levels(x, alpha, level0)
    return alpha, float(lv[-1]), x - lv[:-1]


class ThetaConfig(ForecasterConfig):
    type: Literal["theta"] = "theta"
    theta: float = Field(2.0, ge=1.0, le=10.0, description="Weight of the short-term curvature (2 = classic Theta)")
    seasonal_test: bool = Field(True, description="Deseasonalise when the lag-m autocorrelation test says so")


@register
class Theta(Forecaster):
    """Classic Theta: SES on the seasonally adjusted series plus drift of (1 - 1/theta) of the OLS slope."""

    Config = ThetaConfig
    min_length = 1

    def _fit(self, y: np.ndarray) -> None:
        self._season: Season | None = season_for(y, self.season_length) if self.config.seasonal_test else None
        x = self._season.adjust(y) if self._season else y
        n = len(x)
        t = np.arange(n)
        self._slope = float(np.polyfit(t, x, 1)[0]) if n >= 2 else 0.0
        self._alpha, self._level, resid = fit_ses(x)
        self._n = n
        self._sigma = residual_sigma(resid, dof=1)

    def _predict(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        a, n = self._alpha, self._n
        k = np.arange(h)
        drift = self._slope * (1.0 - 1.0 / self.config.theta)
        mean = self._level + drift * (k + (1.0 - (1.0 - a) ** n) / a)
        sigma = self._sigma * np.sqrt(1.0 + a * a * k)
        if self._season:
            return self._season.apply(mean, h), self._season.scale_sigma(sigma, h)
        return mean, sigma
