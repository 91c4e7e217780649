"""Forecast accuracy metrics as pure functions (Hyndman & Koehler, 2006 definitions).

sMAPE is in percent on the 0-200 scale used by the M3/M4 competitions; MASE is scaled by the
in-sample mean absolute seasonal-naive error, so it compares across SKUs of any size.
"""

from __future__ import annotations

import numpy as np


def mae(y: np.ndarray, f: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y) - np.asarray(f))))


def rmse(y: np.ndarray, f: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(f)) ** 2)))


def mape(y: np.ndarray, f: np.ndarray) -> float:
    """Mean absolute percentage error over the non-zero actuals (NaN when all actuals are zero)."""
    y, f = np.asarray(y, float), np.asarray(f, float)
    nz = y != 0
    if not np.any(nz):
        return float("nan")
    return float(100.0 * np.mean(np.abs((y[nz] - f[nz]) / y[nz])))


def smape(y: np.ndarray, f: np.ndarray) -> float:
    """Symmetric MAPE in percent (0-200); a bucket where actual and forecast are both 0 counts as 0."""
    y, f = np.asarray(y, float), np.asarray(f, float)
    denom = np.abs(y) + np.abs(f)
    terms = np.where(denom > 0, 2.0 * np.abs(y - f) / np.where(denom > 0, denom, 1.0), 0.0)
    return float(100.0 * np.mean(terms))


def mase_scale(insample: np.ndarray, season_length: int = 1) -> float:
    """Mean absolute seasonal-naive error in sample (lag 1 when shorter than a season + 1); NaN if 0."""
    x = np.asarray(insample, float)
    m = season_length if len(x) > season_length else 1
    if len(x) <= m:
        return float("nan")
    s = float(np.mean(np.abs(x[m:] - x[:-m])))
    if s == 0.0 and m > 1:
        s = float(np.mean(np.abs(np.diff(x))))
    return s if s > 0 else float("nan")


def mase(y: np.ndarray, f: np.ndarray, insample: np.ndarray, season_length: int = 1) -> float:
    return mae(y, f) / mase_scale(insample, season_length)


def rmsse(y: np.ndarray, f: np.ndarray, insample: np.ndarray) -> float:
    """Root mean squared scaled error (M5): RMSE over the in-sample RMS of one-step changes; NaN if 0.

    Squared errors are minimised by the mean, so unlike MASE it cannot be won by forecasting 0 on
    intermittent demand (where the median is 0); it is what a stock plan needs.
    """
    x = np.asarray(insample, float)
    if len(x) < 2:
        return float("nan")
    s = float(np.mean(np.diff(x) ** 2))
    return float(np.sqrt(np.mean((np.asarray(y, float) - np.asarray(f, float)) ** 2) / s)) if s > 0 else float("nan")


def bias(y: np.ndarray, f: np.ndarray) -> float:
    """Mean forecast minus actual: positive = over-forecasting (too much stock)."""
    return float(np.mean(np.asarray(f, float) - np.asarray(y, float)))


def coverage(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Share of actuals inside [lo, hi]; compare with the interval's nominal level."""
    y = np.asarray(y, float)
    return float(np.mean((y >= np.asarray(lo)) & (y <= np.asarray(hi))))


def evaluate(y: np.ndarray, mean: np.ndarray, lo: np.ndarray, hi: np.ndarray, insample: np.ndarray,
             season_length: int = 1) -> dict[str, float]:
    """Every metric for one forecast against its actuals."""
    return {"mae": mae(y, mean), "rmse": rmse(y, mean), "mape": mape(y, mean), "smape": smape(y, mean),
            "mase": mase(y, mean, insample, season_length), "rmsse": rmsse(y, mean, insample), "bias": bias(y, mean), "coverage": coverage(y, lo, hi)}
