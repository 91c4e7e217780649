"""statsforecast (Nixtla) as the forecasting engine of `combo`, imported lazily.

statsforecast 2.x compiles its ETS, Theta and ARIMA cores ahead of time (C++, no numba JIT any
more), so there is no first-call compile cost to cache; what a fresh process pays once is the
import (about 1.5 s, measured in benchmarks/bench_forecast.py). Without statsforecast the
hand-written ETS (statsmodels) and Theta stand in, and a warning says so once per process.
"""

from __future__ import annotations

import logging
import warnings
from statistics import NormalDist
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_Z80 = NormalDist().inv_cdf(0.9)
_state: dict[str, Any] = {}


def statsforecast_models() -> Any | None:
    """The statsforecast.models module, or None (warned once) when it is not installed."""
    if "models" not in _state:
        try:
            import statsforecast.models as models
        except ImportError:
            models = None
            logger.warning("statsforecast is not installed: `combo`/`auto` fall back to the slower, less accurate "
                           "hand-written ETS and Theta (pip install 'smartstock[edge]')")
        _state["models"] = models
    return _state["models"]


def _build(models: Any, kind: str) -> Any:
    if kind == "damped":
        return models.AutoETS(season_length=1, model="AAN", damped=True)
    if kind == "dot":
        return models.DynamicOptimizedTheta(season_length=1)
    if kind == "theta":
        return models.Theta(season_length=1)
    if kind == "autoets":  # no seasonal form: the series is already seasonally adjusted
        return models.AutoETS(season_length=1, model="ZZN")
    raise ValueError(f"unknown engine member {kind!r}")


def _fallback(kind: str, x: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    from smartstock.forecasting.statistical import Ets
    from smartstock.forecasting.theta import Theta

    ets = kind in ("damped", "autoets")
    model = Ets(Ets.Config(seasonal_test=False)) if ets else Theta(Theta.Config(seasonal_test=False))
    return model.fit(x)._predict(h)


def non_seasonal(kind: str, x: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sigma) of member `kind` fitted on an already seasonally adjusted series x."""
    x = np.asarray(x, float)
    n = len(x)
    if n < 4 or np.ptp(x) == 0:  # too short for any fit, or flat: carry the level, honest sigma
        sigma = float(np.std(np.diff(x))) if n > 1 else 0.0
        return np.full(h, float(np.mean(x[-3:]))), np.full(h, sigma) * np.sqrt(np.arange(1, h + 1))
    models = statsforecast_models()
    if models is None:
        return _fallback(kind, x, h)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = _build(models, kind).forecast(y=x, h=h, level=[80])
        mean = np.asarray(out["mean"], float)
        sigma = (np.asarray(out["hi-80"], float) - mean) / _Z80
        if np.all(np.isfinite(mean)) and np.all(np.isfinite(sigma)):
            return mean, np.abs(sigma)
        logger.debug("statsforecast %s gave non-finite output on %d points", kind, n)
    except Exception as e:  # noqa: BLE001 - a third-party optimiser failing on one series must not stop the run
        logger.debug("statsforecast %s failed on %d points: %s", kind, n, e)
    return _fallback(kind, x, h)
