"""Seasonality test and classical decomposition, shared by Theta, ETS, ARIMA and `combo`.

The M3/M4 recipe: test the autocorrelation at the seasonal lag at 90 %; when seasonal, divide the
series by classical multiplicative seasonal indices (additive when the series touches zero), model
the adjusted series, and put the season back on the forecast. Two full seasons are enough for the
test (as in statsforecast's Theta): weekly shop data with a yearly season is mostly 2-3 years long,
and asking for three seasons forecast its holiday peaks flat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def acf(y: np.ndarray, nlags: int) -> np.ndarray:
    """Sample autocorrelations r_1..r_nlags (biased estimator, as in the M4 benchmarks)."""
    x = np.asarray(y, dtype=float) - np.mean(y)
    denom = float(np.sum(x * x))
    if denom == 0.0:
        return np.zeros(nlags)
    return np.array([np.sum(x[k:] * x[:-k]) / denom for k in range(1, nlags + 1)])


MIN_SEASONS = 2  # full seasons of history the test needs


def is_seasonal(y: np.ndarray, m: int, z: float = 1.645) -> bool:
    """90 % test of the lag-m autocorrelation against Bartlett's bound; needs two full seasons."""
    n = len(y)
    if m < 2 or n < MIN_SEASONS * m:
        return False
    r = acf(y, m)
    limit = z * np.sqrt((1.0 + 2.0 * np.sum(r[:-1] ** 2)) / n)
    return bool(abs(r[-1]) > limit)


@dataclass(frozen=True)
class Season:
    """Seasonal indices by position; `phase` is the position of the first observation."""

    indices: np.ndarray  # length m; multiplicative (mean 1) or additive (mean 0)
    multiplicative: bool
    n: int  # length of the history the indices were estimated on

    def adjust(self, y: np.ndarray) -> np.ndarray:
        s = self.indices[np.arange(len(y)) % len(self.indices)]
        return y / s if self.multiplicative else y - s

    def future(self, h: int) -> np.ndarray:
        return self.indices[(self.n + np.arange(h)) % len(self.indices)]

    def apply(self, x: np.ndarray, h: int) -> np.ndarray:
        s = self.future(h)
        return x * s if self.multiplicative else x + s

    def scale_sigma(self, sigma: np.ndarray, h: int) -> np.ndarray:
        return sigma * self.future(h) if self.multiplicative else sigma


def decompose(y: np.ndarray, m: int) -> Season:
    """Classical decomposition: centred moving average, then mean ratio (or difference) per position."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    multiplicative = bool(np.min(y) > 0)
    if m % 2 == 0:
        w = np.r_[0.5, np.ones(m - 1), 0.5] / m
    else:
        w = np.ones(m) / m
    trend = np.convolve(y, w, mode="valid")
    off = (len(w) - 1) // 2
    idx = np.arange(off, off + len(trend))
    detr = y[idx] / trend if multiplicative else y[idx] - trend
    raw = np.array([np.mean(detr[(idx % m) == j]) if np.any((idx % m) == j) else (1.0 if multiplicative else 0.0)
                    for j in range(m)])
    if multiplicative:
        if not np.all(np.isfinite(raw)) or np.any(raw <= 0):
            return Season(np.ones(m), True, n)
        raw = raw / np.mean(raw)
    else:
        raw = raw - np.mean(raw)
    return Season(raw, multiplicative, n)


def season_for(y: np.ndarray, m: int) -> Season | None:
    """The decomposition when the test finds seasonality, else None."""
    return decompose(y, m) if is_seasonal(y, m) else None
