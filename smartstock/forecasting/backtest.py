"""Rolling-origin backtest: refit at several forecast origins, score every model on what followed.

This is how `auto` picks a model per SKU and where the forecast-error distribution for safety
stock comes from (the errors are measured, not assumed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from smartstock.forecasting import metrics
from smartstock.forecasting.base import Forecast, make_forecaster
from smartstock.forecasting.combination import EnsembleConfig, combine_point

logger = logging.getLogger(__name__)

MIN_TRAIN = 6  # shortest training part of a backtest window (seasonal terms switch off by themselves)


def origins(n: int, h: int, windows: int, step: int | None = None, min_train: int = 4) -> list[int]:
    """Training lengths of the backtest windows, oldest first; each leaves h points to score."""
    step = step or h
    out = [n - h - i * step for i in range(windows)]
    return sorted(o for o in out if o >= min_train)


@dataclass
class BacktestResult:
    """Per model: metrics averaged over the windows and the raw errors (actual - forecast)."""

    h: int
    origins: list[int]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: dict[str, np.ndarray] = field(default_factory=dict)  # windows x h
    z_errors: dict[str, np.ndarray] = field(default_factory=dict)  # errors / the model's own sigma
    failed: dict[str, str] = field(default_factory=dict)

    def best(self, metric: str = "mase") -> str | None:
        """Alias with the lowest mean `metric` (MAE when MASE is undefined for a flat history)."""
        scored = {a: m.get(metric) for a, m in self.metrics.items()}
        if any(v is None or not np.isfinite(v) for v in scored.values()):
            scored = {a: m["mae"] for a, m in self.metrics.items()}
        scored = {a: v for a, v in scored.items() if v is not None and np.isfinite(v)}
        return min(scored, key=lambda a: (scored[a], a)) if scored else None

    def table(self) -> list[dict[str, float | str]]:
        return [{"model": a, **m} for a, m in sorted(self.metrics.items(), key=lambda kv: kv[1].get("mase", 0.0))]


def _combine(parts: list[Forecast], method: str, level: float) -> Forecast:
    mean = combine_point([p.mean for p in parts], method)
    down = np.mean(np.vstack([p.mean - p.lo for p in parts]), axis=0)
    up = np.mean(np.vstack([p.hi - p.mean for p in parts]), axis=0)
    return Forecast(mean, mean - down, mean + up, "ensemble", level)


def backtest(y: np.ndarray, models: list[str], *, h: int, season_length: int = 1, windows: int = 3,
             step: int | None = None, level: float = 0.9, min_train: int = 4) -> BacktestResult:
    """Score `models` (aliases) at up to `windows` origins. The ensemble reuses its members' fits."""
    y = np.asarray(y, float)
    result = BacktestResult(h=h, origins=origins(len(y), h, windows, step, min_train))
    ens = EnsembleConfig()
    base = [m for m in models if m != "ensemble"]
    if "ensemble" in models:
        base += [m for m in ens.members if m not in base]
    per_model: dict[str, list[tuple[np.ndarray, Forecast]]] = {m: [] for m in models}
    for o in result.origins:
        train, test = y[:o], y[o:o + h]
        fcs: dict[str, Forecast] = {}
        for alias in base:
            if alias in result.failed:
                continue
            try:
                fcs[alias] = make_forecaster(alias, season_length=season_length).forecast(train, h, level)
            except (ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
                result.failed[alias] = f"{type(e).__name__}: {e}"
                logger.debug("backtest %s at origin %d failed: %s", alias, o, e)
        if "ensemble" in models and all(m in fcs for m in ens.members):
            fcs["ensemble"] = _combine([fcs[m] for m in ens.members], ens.method, level)
        for alias in models:
            if alias in fcs:
                per_model[alias].append((train, fcs[alias]))
    for alias, runs in per_model.items():
        if alias in result.failed or len(runs) != len(result.origins) or not runs:
            continue
        scores, errs, zs = [], [], []
        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        for (train, fc), o in zip(runs, result.origins):
            actual = y[o:o + h]
            scores.append(metrics.evaluate(actual, fc.mean, fc.lo, fc.hi, train, season_length))
            errs.append(actual - fc.mean)
            sigma = (fc.hi - fc.lo) / (2.0 * z)
            zs.append(np.where(sigma > 0, (actual - fc.mean) / np.where(sigma > 0, sigma, 1.0), np.nan))
        result.metrics[alias] = {k: float(np.nanmean([s[k] for s in scores])) if not all(np.isnan(s[k]) for s in scores)
                                 else float("nan") for k in scores[0]}
        result.errors[alias] = np.vstack(errs)
        result.z_errors[alias] = np.vstack(zs)
    return result
