"""Pooled service figures of replayed series, stock at an equal achieved service, and their noise.

Why: at one nominal service target the drivers of a policy land at different achieved services, so
"less stock" mixes a cheaper plan with a plan that simply serves less. Sweeping the target with the
same forecasts gives each driver a curve of (achieved service, average stock); read at one achieved
level, the stock is comparable. The series are the unit of resampling (a series' cycles share one
plan), so the noise is a bootstrap over series, paired across drivers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# one row per series: replenishment cycles, cycles with a stock-out, units served, units demanded,
# average stock in periods of mean demand (nan: the series was skipped for this driver)
FIELDS = ("cycles", "short", "served", "demand", "stock")


def pooled(per: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    """Pooled cycle service, fill rate and mean stock of a (series x FIELDS) array, optionally weighted
    (a bootstrap resample is a vector of how often each series was drawn)."""
    w = np.ones(len(per)) if weights is None else np.asarray(weights, float)
    ok = np.isfinite(per[:, 4])
    cycles, short, served, demand = (float(w[ok] @ per[ok, i]) for i in range(4))
    n = float(w[ok].sum())
    return {"cycles": cycles, "cycle_service_level": 1.0 - short / cycles if cycles else math.nan,
            "fill_rate": served / demand if demand else math.nan,
            "avg_stock_periods": float(w[ok] @ per[ok, 4]) / n if n else math.nan}


def at_level(points: Sequence[tuple[float, float]], level: float) -> float:
    """Stock at an achieved service `level`, linear between the two neighbouring points of a sweep
    (`points` = (achieved service, stock) in the order of rising target) whose services bracket it;
    the first such pair, i.e. the least stock that reaches the level. nan when the sweep misses it."""
    for (s0, k0), (s1, k1) in zip(points, points[1:]):
        if not all(map(math.isfinite, (s0, k0, s1, k1))):
            continue
        if s0 == level:
            return k0
        if min(s0, s1) <= level <= max(s0, s1):
            return k1 if s1 == s0 else k0 + (k1 - k0) * (level - s0) / (s1 - s0)
    return math.nan


def bracket(points: Sequence[tuple[float, float]], level: float) -> tuple[int, int] | None:
    """Indices of the pair of sweep points `at_level` reads between (None when it misses)."""
    for i, ((s0, _), (s1, _)) in enumerate(zip(points, points[1:])):
        if math.isfinite(s0) and math.isfinite(s1) and min(s0, s1) <= level <= max(s0, s1):
            return i, i + 1
    return None


def stock_at(sweep: Sequence[np.ndarray], level: float, key: str = "cycle_service_level",
             weights: np.ndarray | None = None) -> float:
    """`at_level` on a driver's sweep (one per-series array per target, rising targets)."""
    figs = [pooled(per, weights) for per in sweep]
    return at_level([(f[key], f["avg_stock_periods"]) for f in figs], level)


def bootstrap_ratio(a: Sequence[np.ndarray], b: Sequence[np.ndarray], level: float, *, key: str = "cycle_service_level",
                    n: int = 400, seed: int = 0) -> dict[str, float]:
    """Stock of driver a over driver b at the same achieved `level` - 1, and its 5-95 % interval over
    resamples of the series (the same draws for both drivers: the comparison is paired)."""
    point = stock_at(a, level, key) / stock_at(b, level, key) - 1.0
    if not math.isfinite(point):  # a sweep that misses the level: no comparison to resample
        return {"diff": math.nan, "lo90": math.nan, "hi90": math.nan, "resamples": 0}
    rng = np.random.default_rng(seed)
    m = len(a[0])
    ratios = []
    for _ in range(n):
        w = rng.multinomial(m, np.full(m, 1.0 / m)).astype(float)
        ka, kb = stock_at(a, level, key, w), stock_at(b, level, key, w)
        if math.isfinite(ka) and math.isfinite(kb) and kb > 0:
            ratios.append(ka / kb - 1.0)
    lo, hi = (np.percentile(ratios, [5, 95]) if ratios else (math.nan, math.nan))
    return {"diff": float(point), "lo90": float(lo), "hi90": float(hi), "resamples": len(ratios)}


def bootstrap_se(per: np.ndarray, key: str = "cycle_service_level", *, n: int = 400, seed: int = 0) -> float:
    """Standard error of a pooled figure over resamples of the series."""
    rng = np.random.default_rng(seed)
    m = len(per)
    vals = [pooled(per, rng.multinomial(m, np.full(m, 1.0 / m)))[key] for _ in range(n)]
    return float(np.nanstd(vals, ddof=1))
