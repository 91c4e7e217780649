"""`combo`: the combination of damped ETS and two Theta variants on statsforecast, for continuous demand.

Combining different reasonable models is the most reliable lesson of the M3/M4 competitions; on
M3 quarterly and M4 weekly (benchmarks/bench_forecast.py) the median of damped-trend ETS,
dynamic optimised Theta and standard Theta beat each member and statsforecast's AutoETS,
AutoARIMA and seasonal Theta, at a fraction of AutoETS's time. A short rolling-origin backtest
(MASE: scale-free and not rewarded for forecasting zeros) may replace the median by the mean of
ETS and dynamic Theta, but only when clearly better: a backtest of a few windows is noisy, so the
choice shrinks toward the default combination.

Seasonality: the 90 % autocorrelation test from two full seasons on, classical decomposition,
members fitted on the adjusted series. Closed days (smartstock.forecasting.closed) are cut out
before anything is fitted and forecast as exactly 0.
"""

from __future__ import annotations

import logging
from statistics import NormalDist
from typing import Literal

import numpy as np
from pydantic import Field

from smartstock.forecasting import combination, metrics
from smartstock.forecasting.backtest import BacktestResult
from smartstock.forecasting.base import Forecaster, ForecasterConfig, register
from smartstock.forecasting.closed import closed_positions, open_mask
from smartstock.forecasting.engine import MEMBERS, non_seasonal
from smartstock.forecasting.seasonality import season_for

logger = logging.getLogger(__name__)

Parts = dict[str, tuple[np.ndarray, np.ndarray]]  # member -> (mean, sigma), in the units of y
_Z90 = NormalDist().inv_cdf(0.95)  # backtest coverage is of the 90 % interval, as in backtest.py
COMBINATIONS = {"median3": ("median", MEMBERS), "mean2": ("mean", ("damped", "dot"))}


class ComboConfig(ForecasterConfig):
    type: Literal["combo"] = "combo"
    horizon: int = Field(0, ge=0, le=1000, description="Forecast/backtest horizon fitted up front "
                                                       "(0 = one season, at least 4; a longer predict refits)")
    windows: int = Field(2, ge=0, le=20, description="Backtest origins (0 = always the default combination)")
    margin: float = Field(0.2, ge=0.0, lt=1.0, description=(
        "The alternative combination replaces the default only when its backtest MASE is this much lower "
        "(0.2 = 20 %): shrinkage toward the combination that won on M3/M4"))
    max_history: int = Field(-1, ge=-1, le=100_000, description=(
        "Members see at most this many recent points (-1 = six seasons, at least 300; 0 = all): older demand "
        "says little about the next weeks, and the fit time grows with the length"))
    default: Literal["median3", "mean2"] = Field("median3", description=(
        "median3 = median of damped ETS, dynamic Theta and Theta; mean2 = mean of damped ETS and dynamic Theta"))


def _core(x: np.ndarray, m: int, h: int) -> Parts:
    """Members' forecasts of x: seasonal adjustment when the test says so, members on the rest."""
    season = season_for(x, m) if m > 1 else None
    adj = season.adjust(x) if season else x
    parts: Parts = {}
    for kind in MEMBERS:
        mean, sigma = non_seasonal(kind, adj, h)
        if season:
            mean, sigma = season.apply(mean, h), season.scale_sigma(sigma, h)
        parts[kind] = (mean, sigma)
    return parts


def combine(parts: Parts, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Combined mean and sigma (mean of the members' sigmas: their errors are highly correlated)."""
    how, members = COMBINATIONS[name]
    return combination.combine([parts[k][0] for k in members], [parts[k][1] for k in members], how)


@register
class Combo(Forecaster):
    """Median/mean of statsforecast members; exposes `combination`, `closed` and `backtest`."""

    Config = ComboConfig

    def _fit(self, y: np.ndarray) -> None:
        m = self.season_length
        self.closed: np.ndarray | None = closed_positions(y, m)
        self._h = self.config.horizon or max(4, m)
        self._parts = self._members(y, self._h)
        self.combination = self.config.default
        self.backtest = self._backtest(y)
        if self.backtest is not None:
            scores = {c: self.backtest.metrics[c]["mase"] for c in COMBINATIONS}
            if all(np.isfinite(v) for v in scores.values()):
                other = next(c for c in COMBINATIONS if c != self.config.default)
                if scores[other] < (1.0 - self.config.margin) * scores[self.config.default]:
                    self.combination = other
            self.backtest.metrics["combo"] = self.backtest.metrics[self.combination]
            self.backtest.errors["combo"] = self.backtest.errors[self.combination]
            self.backtest.z_errors["combo"] = self.backtest.z_errors[self.combination]
        logger.debug("combo: %s, closed positions %s", self.combination,
                     None if self.closed is None else np.flatnonzero(self.closed).tolist())

    def _members(self, y: np.ndarray, h: int) -> Parts:
        """Members' forecasts in the units of y: closed positions cut out, then forecast 0 with no spread."""
        m, cap = self.season_length, self.config.max_history
        cap = max(6 * m, 300) if cap < 0 else cap
        if cap and len(y) > cap:  # keep whole seasons, so positions (and closed days) stay aligned
            y = y[((len(y) - cap) // m) * m:]
        if self.closed is None:
            return _core(y, self.season_length, h)
        keep = open_mask(self.closed, 0, len(y))
        future = open_mask(self.closed, len(y), h)
        m_open = int(np.sum(~self.closed))
        parts = _core(y[keep], m_open, int(future.sum())) if future.any() else {}
        out: Parts = {}
        for kind in MEMBERS:
            mean, sigma = np.zeros(h), np.zeros(h)
            if kind in parts:
                mean[future], sigma[future] = parts[kind]
            out[kind] = (mean, sigma)
        return out

    def _backtest(self, y: np.ndarray) -> BacktestResult | None:
        """Both combinations at `windows` origins, h apart, each refitted on the history before it."""
        h, n = self._h, len(y)
        starts = sorted(n - k * h for k in range(1, self.config.windows + 1) if n - k * h >= max(2 * h, 8))
        if not starts:
            return None
        result = BacktestResult(h=h, origins=starts)
        runs: dict[str, list] = {c: [] for c in COMBINATIONS}
        for o in starts:
            parts = self._members(y[:o], h)
            for c in COMBINATIONS:
                runs[c].append(combine(parts, c))
        for c, fcs in runs.items():
            scores, errs, zs = [], [], []
            for o, (mean, sigma) in zip(starts, fcs):
                actual, train = y[o:o + h], y[:o]
                half = _Z90 * sigma
                scores.append(metrics.evaluate(actual, mean, mean - half, mean + half, train, self.season_length))
                errs.append(actual - mean)
                zs.append(np.where(sigma > 0, (actual - mean) / np.where(sigma > 0, sigma, 1.0), np.nan))
            result.metrics[c] = {k: float(np.nanmean([s[k] for s in scores]))
                                 if np.any(np.isfinite([s[k] for s in scores])) else float("nan") for k in scores[0]}
            result.errors[c] = np.vstack(errs)
            result.z_errors[c] = np.vstack(zs)
        return result

    def _predict(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        if h > self._h:  # fitted for a shorter horizon: refit for this one
            self._h, self._parts = h, self._members(self._y, h)
        mean, sigma = combine(self._parts, self.combination)
        return mean[:h], sigma[:h]
