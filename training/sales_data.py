"""Generated sales for the shipped demand model and tests: many SKUs with level, trend, season, noise.

Real sales are private to each plant; this gives a reproducible stand-in with the shapes that
matter (weekly season, slow trends, promotions, intermittent spare parts).
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np


def generate_series(n_series: int, length: int, season_length: int = 12, seed: int = 0,
                    intermittent_share: float = 0.15) -> list[np.ndarray]:
    """Non-negative bucket histories of `length` points."""
    rng = np.random.default_rng(seed)
    out = []
    t = np.arange(length)
    for _ in range(n_series):
        level = rng.lognormal(3.0, 1.0)
        if rng.random() < intermittent_share:
            p = rng.uniform(0.1, 0.5)
            y = (rng.random(length) < p) * rng.poisson(level / 4 + 1, length)
        else:
            trend = rng.normal(0, 0.01) * level
            amp = rng.uniform(0, 0.4) * level
            phase = rng.uniform(0, 2 * np.pi)
            base = level + trend * t + amp * np.sin(2 * np.pi * t / season_length + phase)
            y = rng.poisson(np.maximum(base, 0.1)) * np.where(rng.random(length) < 0.03, 1.8, 1.0)
        out.append(np.asarray(y, float))
    return out


def write_sales_csv(path: Path, series: list[np.ndarray], freq: str = "M", start: dt.date = dt.date(2018, 1, 1)) -> Path:
    """unique_id,ds,y file (one row per bucket) for `smartstock train lstm` / `forecast`."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["unique_id", "ds", "y"])
        for i, y in enumerate(series):
            for k, v in enumerate(y):
                if freq == "M":
                    d = dt.date(start.year + (start.month - 1 + k) // 12, (start.month - 1 + k) % 12 + 1, 1)
                elif freq == "W":
                    d = start + dt.timedelta(weeks=k)
                else:
                    d = start + dt.timedelta(days=k)
                w.writerow([f"SKU-{i:04d}", d.isoformat(), f"{v:g}"])
    return path
