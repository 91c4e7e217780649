"""The inventory benchmark's equal-service comparison: pooling, reading stock at an achieved level,
and the paired bootstrap (benchmarks/_service.py; pure maths, no data files)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks._service import at_level, bootstrap_ratio, bracket, pooled, stock_at


def test_pooled_sums_cycles_and_units_over_series_and_leaves_out_skipped_ones():
    per = np.array([[10, 1, 90.0, 100.0, 2.0],
                    [30, 0, 50.0, 50.0, 4.0],
                    [5, 5, 0.0, 10.0, np.nan]])  # skipped for this driver: counts nothing
    p = pooled(per)
    assert p["cycles"] == 40
    assert p["cycle_service_level"] == pytest.approx(1 - 1 / 40)
    assert p["fill_rate"] == pytest.approx(140 / 150)
    assert p["avg_stock_periods"] == pytest.approx(3.0)
    w = pooled(per, np.array([2.0, 0.0, 1.0]))  # series 0 drawn twice, series 1 not at all
    assert w["cycles"] == 20 and w["cycle_service_level"] == pytest.approx(0.9) and w["avg_stock_periods"] == 2.0


def test_stock_is_read_between_the_targets_that_bracket_the_achieved_level():
    pts = [(0.90, 7.0), (0.94, 8.0), (0.96, 9.0), (0.97, 10.0)]
    assert at_level(pts, 0.95) == pytest.approx(8.5)
    assert bracket(pts, 0.95) == (1, 2)
    assert at_level(pts, 0.94) == 8.0
    assert math.isnan(at_level(pts, 0.99)) and bracket(pts, 0.99) is None  # the sweep does not reach it


def test_a_dip_in_achieved_service_takes_the_least_stock_that_reaches_the_level():
    # achieved service is noisy in the target: 0.96 at the second target, 0.94 at the third
    pts = [(0.93, 7.0), (0.96, 8.0), (0.94, 9.0), (0.97, 10.0)]
    assert at_level(pts, 0.95) == pytest.approx(7.0 + 2 / 3)


def _driver(rng: np.random.Generator, extra_stock: float, n: int = 300) -> list[np.ndarray]:
    """Series whose stock rises with the target and whose service follows it, plus a fixed extra."""
    sweep = []
    for t in (0.90, 0.93, 0.95, 0.97, 0.98):
        cycles = np.full(n, 4.0)
        short = rng.binomial(4, 1 - t, n).astype(float)
        stock = 8.0 * (1 + (t - 0.9)) + extra_stock + rng.normal(0, 0.1, n)
        sweep.append(np.column_stack([cycles, short, 100 - short, np.full(n, 100.0), stock]))
    return sweep


def test_paired_bootstrap_sees_a_real_stock_difference_and_not_an_absent_one():
    rng = np.random.default_rng(1)
    a, b = _driver(rng, 0.0), _driver(rng, 1.0)
    r = bootstrap_ratio(a, b, 0.95, n=200)
    assert r["diff"] == pytest.approx(stock_at(a, 0.95) / stock_at(b, 0.95) - 1)
    assert r["lo90"] <= r["diff"] <= r["hi90"] < 0  # a needs less stock, outside the noise
    same = bootstrap_ratio(a, a, 0.95, n=50)
    assert same["diff"] == 0.0 and same["lo90"] == same["hi90"] == 0.0
