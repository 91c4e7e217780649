"""ETS and ARIMA through statsmodels (imported lazily: only these models need it).

Both follow the M4 benchmark recipe for seasonality: the 90 % autocorrelation test decides, and a
seasonal series is modelled after classical decomposition. That keeps every fit small (3 ETS
variants, a handful of ARIMA orders), fast on a Raspberry Pi, and as accurate on M3 as full
seasonal state-space search (see benchmarks/bench_forecast.py). Model choice inside a family is by
AICc, as in Hyndman & Khandakar (2008).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Literal

import numpy as np
from pydantic import Field

from smartstock.errors import BackendUnavailable
from smartstock.forecasting.base import Forecaster, ForecasterConfig, register, residual_sigma
from smartstock.forecasting.seasonality import Season, season_for
from smartstock.forecasting.theta import fit_ses

logger = logging.getLogger(__name__)


def _statsmodels() -> Any:
    try:
        import statsmodels.api  # noqa: F401
        import statsmodels.tsa.arima.model as arima
        import statsmodels.tsa.exponential_smoothing.ets as ets
        import statsmodels.tsa.stattools as stattools
    except ImportError as e:
        raise BackendUnavailable("ETS/ARIMA need statsmodels, which is not installed",
                                 hint="pip install 'smartstock[edge]' (or pick --model theta/naive)") from e
    return ets, arima, stattools


class _Deseasonalised(Forecaster):
    """Shared part: optional seasonal adjustment around a non-seasonal model of the adjusted series."""

    def _fit(self, y: np.ndarray) -> None:
        self._season: Season | None = season_for(y, self.season_length) if self.config.seasonal_test else None
        x = self._season.adjust(y) if self._season else y
        self._n = len(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._fit_adjusted(x)

    def _predict(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        mean, sigma = self._predict_adjusted(h)
        if self._season:
            return self._season.apply(mean, h), self._season.scale_sigma(sigma, h)
        return mean, sigma

    def _fit_adjusted(self, x: np.ndarray) -> None: ...

    def _predict_adjusted(self, h: int) -> tuple[np.ndarray, np.ndarray]: ...


class EtsConfig(ForecasterConfig):
    type: Literal["ets"] = "ets"
    trend: Literal["auto", "none", "additive", "damped"] = Field(
        "damped", description="Trend component; `auto` picks none or damped by AICc. Default damped: on M3 "
        "it beat AICc choice and the undamped trend, which over-extrapolates (benchmarks/bench_forecast.py)")
    seasonal_test: bool = Field(True, description="Deseasonalise when the seasonal test says so")


@register
class Ets(_Deseasonalised):
    """Exponential smoothing state-space model (additive errors), damped trend unless told otherwise."""

    Config = EtsConfig

    def _fit_adjusted(self, x: np.ndarray) -> None:
        import pandas as pd

        ets, _, _ = _statsmodels()
        n = len(x)
        choices = {"none": (None, False), "additive": ("add", False), "damped": ("add", True)}
        wanted = ["none", "damped"] if self.config.trend == "auto" else [self.config.trend]
        if n < 10:  # too few points to tell a trend from noise: level only
            wanted = [w for w in wanted if w == "none"] or ["none"]
        self._res = None
        self._ses: tuple[float, float, float] | None = None
        best = np.inf
        if np.ptp(x) > 0 and n >= 4:
            series = pd.Series(x)
            for name in wanted:
                trend, damped = choices[name]
                try:
                    res = ets.ETSModel(series, error="add", trend=trend, damped_trend=damped).fit(disp=False)
                except (ValueError, np.linalg.LinAlgError) as e:
                    logger.debug("ets %s failed: %s", name, e)
                    continue
                if np.isfinite(res.aicc) and res.aicc < best:
                    best, self._res, self.chosen = res.aicc, res, name
        if self._res is None:  # constant or tiny series: plain SES, no statsmodels needed
            alpha, level, resid = fit_ses(x)
            self._ses = (alpha, level, residual_sigma(resid))
            self.chosen = "ses"

    def _predict_adjusted(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        if self._ses is not None:
            alpha, level, sigma = self._ses
            return np.full(h, level), sigma * np.sqrt(1.0 + alpha * alpha * np.arange(h))
        p = self._res.get_prediction(start=self._n, end=self._n + h - 1)
        return np.asarray(p.predicted_mean, dtype=float), np.sqrt(np.asarray(p.forecast_variance, dtype=float))


class ArimaConfig(ForecasterConfig):
    type: Literal["arima"] = "arima"
    max_p: int = Field(2, ge=0, le=5, description="Largest AR order tried")
    max_q: int = Field(2, ge=0, le=5, description="Largest MA order tried")
    seasonal_test: bool = Field(True, description="Deseasonalise when the seasonal test says so")


@register
class Arima(_Deseasonalised):
    """ARIMA(p,d,q) with drift: d from KPSS tests, (p,q) by AICc over a small grid."""

    Config = ArimaConfig

    def _fit_adjusted(self, x: np.ndarray) -> None:
        # ARMA with a constant on the d-times differenced series (= ARIMA with drift), integrated by
        # hand: several times faster than statsmodels' state-space differencing, same model.
        _, arima, stattools = _statsmodels()
        n = len(x)
        self._res = None
        self._d = d = _kpss_d(x, stattools)
        if n < 8 or np.ptp(x) == 0:
            self._fallback(x)
            return
        self._tails = [np.diff(x, k)[-1] for k in range(d)]  # last value at each differencing level
        z = np.diff(x, d)
        trend = "c" if d <= 1 else "n"
        orders = [(p, q) for p in range(self.config.max_p + 1) for q in range(self.config.max_q + 1)
                  if p + q <= 2 and p + q + 2 < len(z) // 2]
        best = np.inf
        for p, q in orders:
            try:
                res = arima.ARIMA(z, order=(p, 0, q), trend=trend).fit(cov_type="none")
            except (ValueError, np.linalg.LinAlgError) as e:
                logger.debug("arima (%d,%d,%d) failed: %s", p, d, q, e)
                continue
            if np.isfinite(res.aicc) and res.aicc < best:
                best, self._res, self.chosen = res.aicc, res, (p, d, q)
        if self._res is None:
            self._fallback(x)

    def _fallback(self, x: np.ndarray) -> None:
        self.chosen = (0, 1, 0)
        self._last = float(x[-1])
        self._sigma = residual_sigma(np.diff(x)) if len(x) > 1 else 0.0

    def _predict_adjusted(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        if self._res is None:
            return np.full(h, self._last), self._sigma * np.sqrt(np.arange(1, h + 1))
        from statsmodels.tsa.arima_process import arma2ma

        res = self._res
        z = np.asarray(res.forecast(h), dtype=float)
        for tail in reversed(self._tails):  # integrate back, innermost difference first
            z = tail + np.cumsum(z)
        psi = arma2ma(res.polynomial_ar, res.polynomial_ma, lags=h)
        for _ in range(self._d):
            psi = np.cumsum(psi)
        sigma2 = float(res.params[-1]) if "sigma2" in res.param_names else float(np.var(res.resid))
        return z, np.sqrt(sigma2 * np.cumsum(psi ** 2))


def _kpss_d(x: np.ndarray, stattools: Any, max_d: int = 2) -> int:
    """Number of differences until the KPSS test (5 %) no longer rejects stationarity."""
    d = 0
    while d < max_d and len(x) > 8 and np.ptp(x) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                p = stattools.kpss(x, regression="c", nlags="auto")[1]
            except (ValueError, OverflowError, ZeroDivisionError):
                break
        if p >= 0.05:
            break
        x = np.diff(x)
        d += 1
    return d
