"""A yearly wave in daily demand, read from the same weeks a year ago (for `combo` at m = 7).

Daily shop data rarely has more than two or three years, and a 28-day horizon sits on a short
stretch of the yearly wave: what matters is where the level goes next, which last year's same weeks
say directly. So no yearly seasonal model (MSTL with 7 and 365 days was worse than MSTL(7) in every
benchmark run); instead a test that the wave repeats, and a member that carries the level of the last
four weeks forward, in the weekday shape of the last year, with last year's change from the matching
four weeks to each coming week.

The test: weekly means (a week removes the weekday pattern), their 4-week log changes, and the
correlation of each change with the change 52 weeks earlier. A drifting level or noise gives changes
a year apart that are unrelated; a yearly wave makes them alike. One-sided 95 % against Bartlett's
bound for 4-week changes (which overlap, so neighbours are correlated 3/4, 2/4, 1/4).
"""

from __future__ import annotations

import numpy as np

YEAR = 364  # 52 weeks: a year-ago day is the same weekday
STEP = 4  # weeks per change in the test, and the window the member's level is taken from
MIN_PAIRS = 20  # changes a year apart the test needs (about 76 weeks of history)
MAX_YEARS = 3  # year-ago ratios averaged (log scale)
SHAPE_WEEKS = 52  # weeks the weekday shape is averaged over (4, 13, 26, 39, 52 measured: the longer the better)
_Z95 = 1.6448536269514722  # one-sided 95 %; at 90 % (1.28) the choosing half of dailyy scored 0.788 vs 0.782


def yearly_wave(y: np.ndarray, z: float = _Z95) -> bool:
    """True when 4-week changes repeat a year later (a yearly wave), judged on whole weeks of y."""
    y = np.asarray(y, float)
    n = len(y) // 7 * 7
    weeks = y[len(y) - n:].reshape(-1, 7).mean(axis=1)
    if n == 0 or np.min(weeks) < 0:  # demand is not negative; a series that is has no wave to read here
        return False
    lw = np.log(weeks + 0.5)
    change = lw[STEP:] - lw[:-STEP]
    now, before = change[52:], change[:-52]
    if len(now) < MIN_PAIRS or np.std(now) == 0 or np.std(before) == 0:
        return False
    r = float(np.corrcoef(now, before)[0, 1])
    rho = (STEP - np.arange(1, STEP)) / STEP
    return r > z * np.sqrt((1.0 + 2.0 * np.sum(rho ** 2)) / len(now))


def year_ago(y: np.ndarray, h: int, closed: np.ndarray | None = None) -> np.ndarray | None:
    """Forecast of the next h days: the mean of the last 28 days in the weekday shape of the last 52 weeks
    (closed weekdays, a mask by position from y[0], 0), times last year's ratio of each coming week to the
    28 days before it (mean log ratio over up to three years). None when the history has no year-ago
    window, the horizon is over a year, or a year-ago week sold nothing."""
    y = np.asarray(y, float)
    n, weeks = len(y), (h + 6) // 7
    if h < 1 or weeks * 7 > YEAR or n < 28:
        return None
    logs = []
    for k in range(1, MAX_YEARS + 1):
        then = n - k * YEAR  # the same day, k years ago
        if then - 28 < 0:
            break
        base = np.mean(y[then - 28:then])
        ahead = y[then:then + 7 * weeks].reshape(weeks, 7).mean(axis=1)
        if base <= 0 or np.any(ahead <= 0):
            break
        logs.append(np.log(ahead / base))
    if not logs:
        return None
    ratio = np.repeat(np.exp(np.mean(logs, axis=0)), 7)[:h]
    weeks_back = min(SHAPE_WEEKS, n // 7)
    shape = y[n - 7 * weeks_back:].reshape(weeks_back, 7).mean(axis=0)  # shape[i]: weekday of day n + i (mod 7)
    if closed is not None:
        shape = np.where(closed[(n + np.arange(7)) % len(closed)], 0.0, shape)
    if np.sum(shape) <= 0:
        return None
    level = np.mean(y[-28:]) / np.mean(shape)  # a closed day carries no share of the level
    return level * shape[np.arange(h) % 7] * ratio
