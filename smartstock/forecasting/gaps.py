"""Which stretch of a sales history to use: data gaps are missing data, not zero demand.

A sales export that stopped for months and then one new sale must not read as months of zero demand
(issue 13: demand per day, reorder points and EOQ dropped about 10-fold without a warning). A stretch
of more than `max_gap_days` in which no SKU sold anything is a gap. The history then used is:

- the data after the last gap when that part is itself at least `max_gap_days` long (a new regime);
- otherwise the data before the gap (the few sales after it are too few to plan from), flagged stale.

The window is also stale when its newest day lies more than `max_gap_days` before today (the sales
feed stopped). One rule for the store (`smartstock.inventory.history`, plans and forecasts from the
store) and for sales files (`smartstock.forecasting.io.read_series_csv`, `smartstock forecast FILE.csv`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HistoryWindow:
    """The days of sales a plan uses (`start`..`end`, inclusive; None = no sales at all)."""

    start: dt.date | None
    end: dt.date | None
    today: dt.date
    last_sale: dt.date | None          # newest sale of any SKU, after the gap too
    gap_start: dt.date | None = None   # first day of the last data gap (no sale of any SKU)
    gap_end: dt.date | None = None     # its last day
    stale: bool = False
    reason: str = ""

    @property
    def gap_days(self) -> int:
        return (self.gap_end - self.gap_start).days + 1 if self.gap_start and self.gap_end else 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: dates as ISO text."""
        iso = (lambda d: d.isoformat() if d else None)
        return {"history_start": iso(self.start), "history_end": iso(self.end), "last_sale_any": iso(self.last_sale),
                "data_gap": ({"from": iso(self.gap_start), "to": iso(self.gap_end), "days": self.gap_days}
                             if self.gap_start else None),
                "stale": self.stale, "stale_reason": self.reason or None}


def history_window(days: Sequence[dt.date], *, today: dt.date, max_gap_days: float) -> HistoryWindow:
    """The window of `days` (sorted days with any sale) to plan from, as of `today`."""
    ds = sorted(set(days))
    if not ds:
        return HistoryWindow(None, None, today, None)
    segments: list[list[dt.date]] = [[ds[0]]]
    for prev, cur in zip(ds, ds[1:]):
        if (cur - prev).days - 1 > max_gap_days:
            segments.append([])
        segments[-1].append(cur)
    last = segments[-1]
    gap_start = gap_end = None
    reason = ""
    stale = False
    if len(segments) == 1 or (last[-1] - last[0]).days + 1 >= max_gap_days:
        start, end = last[0], last[-1]
        if len(segments) > 1:
            gap_start = segments[-2][-1] + dt.timedelta(days=1)
            gap_end = last[0] - dt.timedelta(days=1)
            reason = (f"no sales of any SKU from {gap_start} to {gap_end} ({(gap_end - gap_start).days + 1} days): "
                      f"planning from the {(end - start).days + 1} days since {start}")
    else:
        before = segments[-2]
        start, end = before[0], before[-1]
        gap_start, gap_end = end + dt.timedelta(days=1), last[0] - dt.timedelta(days=1)
        stale = True
        reason = (f"data gap: no sales of any SKU from {gap_start} to {gap_end} "
                  f"({(gap_end - gap_start).days + 1} days), then only {(last[-1] - last[0]).days + 1} day(s) of "
                  f"sales; planning from the history up to {end}, not from zeros")
    idle = (today - end).days
    if idle > max_gap_days and not stale:
        stale = True
        reason = (f"the newest sale is from {end}, {idle} days ago: the sales feed looks stopped; "
                  "the plan is from the history up to then")
    return HistoryWindow(start, end, today, ds[-1], gap_start, gap_end, stale, reason)
