"""Small pure helpers that turn dated quantities into evenly spaced buckets for the charts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable


def daily(points: Iterable[tuple[str | dt.date, float]]) -> tuple[list[dt.date], list[float]]:
    """Sum quantities per calendar day and fill the missing days with 0 (no sale is a zero, not a gap)."""
    sums: dict[dt.date, float] = {}
    for day, qty in points:
        d = day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day)[:10])
        sums[d] = sums.get(d, 0.0) + float(qty)
    if not sums:
        return [], []
    first, last = min(sums), max(sums)
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    return days, [sums.get(d, 0.0) for d in days]


def bucket(days: list[dt.date], values: list[float], freq: str) -> tuple[list[dt.date], list[float]]:
    """Sum a daily series into weeks (`W`, starting Monday) or months (`M`, first day of month).

    The first and last buckets may be partial; the caller decides whether to show them.
    """
    out: dict[dt.date, float] = {}
    for d, v in zip(days, values):
        key = _bucket_start(d, freq)
        out[key] = out.get(key, 0.0) + v
    keys = sorted(out)
    return keys, [out[k] for k in keys]


def complete_buckets(days: list[dt.date], values: list[float], freq: str) -> tuple[list[dt.date], list[float]]:
    """Like `bucket` but drops a partial first/last bucket so a trend line does not dip at the ends."""
    if not days:
        return [], []
    keys, sums = bucket(days, values, freq)
    if keys and days[0] != keys[0]:
        keys, sums = keys[1:], sums[1:]
    if keys and _next_start(keys[-1], freq) - dt.timedelta(days=1) > days[-1]:
        keys, sums = keys[:-1], sums[:-1]
    return keys, sums


def _bucket_start(d: dt.date, freq: str) -> dt.date:
    if freq == "W":
        return d - dt.timedelta(days=d.weekday())
    if freq == "M":
        return d.replace(day=1)
    if freq == "D":
        return d
    raise ValueError(f"unknown bucket size {freq!r}; expected D, W or M")


def _next_start(start: dt.date, freq: str) -> dt.date:
    if freq == "W":
        return start + dt.timedelta(days=7)
    if freq == "M":
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start + dt.timedelta(days=1)


def top_n(totals: dict[str, float], n: int) -> list[str]:
    """The n keys with the largest totals (ties broken by name, so the order is stable)."""
    return [k for k, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]
