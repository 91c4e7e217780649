"""`combo`: a combination of ETS and Theta variants on statsforecast, for continuous demand.

Combining different reasonable models is the most reliable lesson of the M3/M4 competitions; on
M3 quarterly and M4 weekly (benchmarks/bench_forecast.py) the median of damped-trend ETS,
dynamic optimised Theta and standard Theta beat each member and statsforecast's AutoETS,
AutoARIMA and seasonal Theta, at a fraction of AutoETS's time. On weekly data with a yearly season
(m = 52) the mean of damped ETS, dynamic Theta and AutoETS is the default instead (see mean3 below),
and on daily data with a weekly season (m = 7) damped ETS alone, or its mean with last year's
change where the history shows a yearly wave (see DAILY_WEEKLY below and yearly.py).
A short rolling-origin backtest (MASE: scale-free and not rewarded for forecasting zeros) may replace
the default by one alternative (the mean of ETS and dynamic Theta), but only when clearly better: a
backtest of a few windows is noisy, so the choice shrinks toward the default combination.

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

from smartstock.errors import ConfigError
from smartstock.forecasting import combination, metrics
from smartstock.forecasting.backtest import BacktestResult
from smartstock.forecasting.base import Forecaster, ForecasterConfig, register
from smartstock.forecasting.closed import closed_positions, open_mask
from smartstock.forecasting.engine import non_seasonal
from smartstock.forecasting.seasonality import season_for
from smartstock.forecasting.yearly import year_ago, yearly_wave

logger = logging.getLogger(__name__)

Parts = dict[str, tuple[np.ndarray, np.ndarray]]  # member -> (mean, sigma), in the units of y
_Z90 = NormalDist().inv_cdf(0.95)  # backtest coverage is of the 90 % interval, as in backtest.py
COMBINATIONS = {"median3": ("median", ("damped", "dot", "theta")), "mean2": ("mean", ("damped", "dot")),
                "mean3": ("mean", ("damped", "dot", "autoets")), "damped": ("mean", ("damped",)),
                "damped+yearly": ("mean", ("damped", "yearly"))}
# Weekly data with a yearly season (m >= 52): the mean of damped ETS, dynamic Theta and AutoETS (trend form
# by AICc). Chosen on a random half (180) of the M4 weekly 156-week cuts, confirmed on the other half
# (179), members fitted once per series and combinations scored offline: MASE 1.966 on the second half vs
# median3 2.119 and statsforecast AutoETS(52) 2.006 (of the candidates built from these members, the
# best on the first half, median of DOTheta/AutoETS/SES, overfitted: 2.063 on the second).
YEARLY_WEEKLY = 52
# Daily data with a weekly season (m = 7): damped-trend ETS alone. Chosen on a random half (55) of 110
# generated daily SKUs (weekly only, weekly + yearly wave, a closed weekday, trend; 400-1100 days, 28 held
# out), confirmed on the other half: `auto` MASE 0.751 vs 0.787 with median3 (the old default), statsforecast
# MSTL(7) 0.812 and AutoETS(7) 0.762 (the backtest kept damped on all 110). Dynamic and standard Theta
# flatten the local trend a yearly wave puts into four weeks (median3 0.880 vs damped 0.720 on the SKUs with
# a smooth wave; members fitted once per SKU, combined offline). Not better on the choosing half: STL instead
# of classical adjustment (statsforecast's mstl), a yearly STL term from two years of history (MSTL 7 + 365),
# members on 730 instead of 300 days (0.797 vs 0.802, at 2.4x the time), and adding AutoETS (0.804; 0.792 on
# 730 days, but then `auto` took 1.86x AutoETS(7)'s time on the closed-Sunday benchmark set).
# Where the history shows a yearly wave (yearly.yearly_wave: 4-week changes that repeat 52 weeks later), the
# mean of damped ETS and `yearly` (the last 28 days' level in the last year's weekday shape, times last year's
# change into each coming week, yearly.year_ago; sigma: damped's). Chosen on a random half of 140 generated
# daily SKUs (the `daily` and `dailyy` benchmark sets and 40 two-year SKUs with a wave, half with a closed
# weekday, seeds 31/32), members fitted once per SKU and combined offline, confirmed on the other half:
# MASE 0.760 vs damped 0.782 and statsforecast AutoETS(7) 0.820 (wave, 3 years: 0.763 vs 0.791; wave, 2
# years: 0.790 vs 0.838; closed Sunday without a wave: 0.738 vs 0.739, the test let one of 30 through). Not
# better on the choosing half: the year-ago member alone, its ratio halved, a SES level or a 4-26-week shape
# in place of the 28-day level in the 52-week shape, choosing per SKU by the 2-window backtest instead of the
# test (on the choosing half of `dailyy`, with a 28-day shape: 0.848 at a 10 % margin vs 0.782 with the test),
# AutoETS forms by AICc (ANN/AAN/AAdN: 0.891 vs damped 0.870 there; all six ZZN forms: 0.894) alone or
# averaged with damped, and windows of 150/450/730 days (730 the best: 0.846 alone, 0.774 with `yearly`).
DAILY_WEEKLY = 7
YEARLY = "yearly"  # member computed from the whole history (not a statsforecast model)


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
    default: Literal["auto", "median3", "mean2", "mean3", "damped", "damped+yearly"] = Field("auto", description=(
        "median3 = median of damped ETS, dynamic Theta and Theta; mean2 = mean of damped ETS and dynamic Theta; "
        "mean3 = mean of damped ETS, dynamic Theta and AutoETS; damped = damped ETS alone; damped+yearly = mean "
        "of damped ETS and last year's change applied to the last 28 days (daily data); auto = mean3 for a "
        "season of 52 or more (weekly data, yearly season), for 7 (daily data, weekly season) damped+yearly "
        "when the history shows a yearly wave and damped otherwise, else median3"))


def default_combination(config: ComboConfig, season_length: int, y: np.ndarray | None = None) -> str:
    """The combination used unless the backtest finds the alternative clearly better (daily history y with
    a yearly wave: damped+yearly)."""
    if config.default == "damped+yearly" and season_length != DAILY_WEEKLY:
        raise ConfigError(f"combo default damped+yearly is for daily data with a weekly season (season length 7); "
                          f"this series has season length {season_length}",
                          hint="set the combo `default` to auto or damped, or forecast daily buckets")
    if config.default != "auto":
        return config.default
    if season_length >= YEARLY_WEEKLY:
        return "mean3"
    if season_length == DAILY_WEEKLY:
        return "damped+yearly" if y is not None and yearly_wave(y) else "damped"
    return "median3"


def alternative(default: str) -> str:
    """The one combination the backtest weighs against the default."""
    return "median3" if default == "mean2" else "mean2"


def members_of(*names: str) -> tuple[str, ...]:
    """Members the named combinations need, in a stable order (each fit costs time)."""
    return tuple(dict.fromkeys(k for n in names for k in COMBINATIONS[n][1]))


def _core(x: np.ndarray, m: int, h: int, members: tuple[str, ...]) -> Parts:
    """Members' forecasts of x: seasonal adjustment when the test says so, members on the rest."""
    season = season_for(x, m) if m > 1 else None
    adj = season.adjust(x) if season else x
    parts: Parts = {}
    for kind in members:
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
        default = default_combination(self.config, m, y)
        self._pair = (default, alternative(default))
        self._parts = self._members(y, self._h)
        self.combination = default
        self.backtest = self._backtest(y)
        if self.backtest is not None:
            scores = {c: self.backtest.metrics[c]["mase"] for c in self._pair}
            if all(np.isfinite(v) for v in scores.values()):
                other = self._pair[1]
                if scores[other] < (1.0 - self.config.margin) * scores[default]:
                    self.combination = other
            self.backtest.metrics["combo"] = self.backtest.metrics[self.combination]
            self.backtest.errors["combo"] = self.backtest.errors[self.combination]
            self.backtest.z_errors["combo"] = self.backtest.z_errors[self.combination]
        logger.debug("combo: %s, closed positions %s", self.combination,
                     None if self.closed is None else np.flatnonzero(self.closed).tolist())

    def _members(self, y: np.ndarray, h: int) -> Parts:
        """Members' forecasts in the units of y: closed positions cut out, then forecast 0 with no spread."""
        members = members_of(*self._pair)
        parts = self._fitted_members(y, h, tuple(k for k in members if k != YEARLY))
        if YEARLY in members:  # from the whole history: it needs last year; damped's sigma; damped when too short
            mean = year_ago(y, h, self.closed)
            parts[YEARLY] = parts["damped"] if mean is None else (mean, parts["damped"][1])
        return parts

    def _fitted_members(self, y: np.ndarray, h: int, members: tuple[str, ...]) -> Parts:
        m, cap = self.season_length, self.config.max_history
        cap = max(6 * m, 300) if cap < 0 else cap
        if cap and len(y) > cap:  # keep whole seasons, so positions (and closed days) stay aligned
            y = y[((len(y) - cap) // m) * m:]
        if self.closed is None:
            return _core(y, self.season_length, h, members)
        keep = open_mask(self.closed, 0, len(y))
        future = open_mask(self.closed, len(y), h)
        m_open = int(np.sum(~self.closed))
        parts = _core(y[keep], m_open, int(future.sum()), members) if future.any() else {}
        out: Parts = {}
        for kind in members:
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
        runs: dict[str, list] = {c: [] for c in self._pair}
        for o in starts:
            parts = self._members(y[:o], h)
            for c in self._pair:
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
