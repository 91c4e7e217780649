"""Reading sales/series CSVs into equally spaced buckets, and writing forecasts back.

Two input shapes, read by `smartstock.ingest` (line-numbered errors, BOM, `;`):
- `sku,date,quantity`: sales records. Summed into `freq` buckets (bucket = its first day); periods
  without a sale are 0 up to the last bucket in the file; rows need not be sorted.
- `unique_id,ds,y`: one row per period already (Nixtla style). Must be sorted by date within a series
  and hold each period once; a missing period is 0 (a sales bucket without sales).
Output mirrors the input naming: `sku,date,forecast,lo,hi` or `unique_id,ds,forecast,lo,hi`.
With `gap_periods` (the CLI passes `forecast.gap_periods`) a stretch of more than that many periods
without a row for any series is a data gap, not zero demand: the same rule as the store's
(`smartstock.forecasting.gaps`), and the rows outside the window it keeps are left out.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from smartstock.errors import InputError
from smartstock.forecasting.gaps import HistoryWindow, history_window
from smartstock.ingest import RowError, open_sales_csv
from smartstock.sku import csv_text

logger = logging.getLogger(__name__)

FREQS = ("D", "W", "M", "Q")
DAYS_PER_BUCKET = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Q": 365.25 / 4}
MAX_REPORTED = 5


def period_index(d: dt.date, freq: str) -> int:
    """Integer bucket number; consecutive buckets differ by 1 (weeks start on Monday)."""
    if freq == "D":
        return d.toordinal()
    if freq == "W":
        return (d.toordinal() - 1) // 7  # ordinal 1 (0001-01-01) is a Monday
    if freq == "M":
        return d.year * 12 + d.month - 1
    return d.year * 4 + (d.month - 1) // 3


def period_start(idx: int, freq: str) -> dt.date:
    if freq == "D":
        return dt.date.fromordinal(idx)
    if freq == "W":
        return dt.date.fromordinal(idx * 7 + 1)
    if freq == "M":
        return dt.date(idx // 12, idx % 12 + 1, 1)
    return dt.date(idx // 4, (idx % 4) * 3 + 1, 1)


def bucket_daily(daily: list[tuple[dt.date, float]], freq: str, end: dt.date) -> tuple[int, np.ndarray]:
    """(period index of the first bucket, sums per bucket) from the first sale to `end`, 0 where no sale.

    A last bucket that `end` does not complete is dropped (a half week would look like a demand drop).
    """
    idx = np.array([period_index(d, freq) for d, _ in daily])
    last = period_index(end, freq)
    if period_index(end + dt.timedelta(days=1), freq) == last and last > idx.min():
        last -= 1  # `end` is not the last day of its bucket
    keep = idx <= last
    start = int(idx.min())
    y = np.zeros(max(0, last - start + 1))
    np.add.at(y, idx[keep] - start, [q for (_, q), k in zip(daily, keep) if k])
    return start, y


def _month_like(template: dt.date, year: int, month: int) -> dt.date:
    """Same day-of-month as `template` (month end stays month end)."""
    last = calendar.monthrange(year, month)[1]
    t_last = calendar.monthrange(template.year, template.month)[1]
    day = last if template.day == t_last else min(template.day, last)
    return dt.date(year, month, day)


def future_dates(last: dt.date, freq: str, h: int, *, like_input: bool) -> list[dt.date]:
    """The h bucket dates after `last`; `like_input` keeps the input's day within month/quarter."""
    if freq in ("D", "W"):
        step = 1 if freq == "D" else 7
        return [last + dt.timedelta(days=step * k) for k in range(1, h + 1)]
    months = 1 if freq == "M" else 3
    out = []
    for k in range(1, h + 1):
        total = last.year * 12 + last.month - 1 + k * months
        y, m = divmod(total, 12)
        out.append(_month_like(last, y, m + 1) if like_input else dt.date(y, m + 1, 1))
    return out


def infer_freq(dates: Iterable[dt.date]) -> str | None:
    """D/W/M/Q from the smallest spacing of the dates (gaps only make spacings longer); None when none fits."""
    d = sorted(set(dates))
    if len(d) < 2:
        return None
    gap = float(np.min(np.diff([x.toordinal() for x in d])))
    for freq, lo, hi in (("D", 1, 1), ("W", 7, 7), ("M", 28, 31), ("Q", 89, 92)):
        if lo <= gap <= hi:
            return freq
    return None


@dataclass
class Series:
    key: str
    start: int  # period index of y[0]
    y: np.ndarray
    last_date: dt.date  # the last input date (series format) or bucket start (sales format)
    filled: int = 0  # buckets filled with 0


@dataclass
class SeriesTable:
    """Bucketed histories per SKU, in first-seen order, plus how to write results back."""

    path: Path
    naming: str  # "sku" or "unique_id"
    freq: str
    series: dict[str, Series] = field(default_factory=dict)
    window: HistoryWindow | None = None  # the gap rule's window when one was applied and found a gap

    @property
    def columns(self) -> tuple[str, str]:
        return ("sku", "date") if self.naming == "sku" else ("unique_id", "ds")

    def dates_after(self, s: Series, h: int) -> list[dt.date]:
        if self.naming == "sku":
            return [period_start(s.start + len(s.y) + k, self.freq) for k in range(h)]
        return future_dates(s.last_date, self.freq, h, like_input=True)


def _fail(path: Path, errors: list[RowError], total: int) -> None:
    lines = "".join(f"\n  line {e.line}: {e.reason}" for e in errors[:MAX_REPORTED])  # one per line
    more = f"\n  ... and {total - MAX_REPORTED} more" if total > MAX_REPORTED else ""
    raise InputError(f"{path}: {total} bad row(s):{lines}{more}\n",
                     hint="fix those rows; a forecast from partly read data would be silently wrong")


def read_series_csv(path: Path | str, freq: str | None = None, *, gap_periods: int | None = None) -> SeriesTable:
    """Read and bucket a CSV; every problem is an InputError naming the file and line. With `gap_periods`,
    a data gap (no row of any series for more than that many periods) is left out, not read as zeros:
    `table.window` says which rows were used and why."""
    path = Path(path)
    if freq is not None and freq not in FREQS:
        raise InputError(f"unknown frequency {freq!r}", hint=f"use one of {', '.join(FREQS)}")
    rows: dict[str, list[tuple[int, dt.date, float]]] = {}
    errors: list[RowError] = []
    n_err = 0
    with open_sales_csv(path) as f:
        naming = f.naming
        for rec in f:
            if isinstance(rec, RowError):
                n_err += 1
                if len(errors) < MAX_REPORTED:
                    errors.append(rec)
                continue
            rows.setdefault(rec.sku, []).append((rec.line, rec.date, rec.quantity))
    if n_err:
        _fail(path, errors, n_err)
    if not rows:
        raise InputError(f"{path}: no data rows after the header", hint="export at least one row per SKU")
    if freq is None:
        freq = "W" if naming == "sku" else infer_freq(d for r in rows.values() for _, d, _ in r)
        if freq is None:
            raise InputError(f"{path}: cannot tell the bucket size from the dates",
                             hint="pass --freq D, W, M or Q")
    table = SeriesTable(path, naming, freq)
    if gap_periods is not None:
        rows = _apply_gap_rule(table, rows, gap_periods)
    if naming == "sku":
        _bucket_sales(table, rows)
    else:
        _check_series(table, rows)
    filled = sum(s.filled for s in table.series.values())
    if filled:
        logger.info("%s: %d missing bucket(s) filled with 0 (no sales recorded in them)", path, filled)
    return table


def _apply_gap_rule(table: SeriesTable, rows: dict[str, list[tuple[int, dt.date, float]]],
                    gap_periods: int) -> dict[str, list[tuple[int, dt.date, float]]]:
    """Rows inside the gap rule's window; the window (with its reason) is kept on the table when a gap
    was found. The file is a snapshot: it is not stale for being old (today = its last date)."""
    days = sorted({d for recs in rows.values() for _, d, _ in recs})
    w = history_window(days, today=days[-1], max_gap_days=gap_periods * DAYS_PER_BUCKET[table.freq])
    if w.gap_start is None or w.start is None or w.end is None:
        return rows
    table.window = w
    logger.info("%s: %s", table.path, w.reason)
    kept = {k: [r for r in recs if w.start <= r[1] <= w.end] for k, recs in rows.items()}
    return {k: recs for k, recs in kept.items() if recs}


def _bucket_sales(table: SeriesTable, rows: dict[str, list[tuple[int, dt.date, float]]]) -> None:
    fq = table.freq
    last_day = max(d for r in rows.values() for _, d, _ in r)
    end = period_index(last_day, fq)
    first = min(period_index(d, fq) for r in rows.values() for _, d, _ in r)
    if period_index(last_day + dt.timedelta(days=1), fq) == end and end > first:
        # the file stops inside its last bucket: a part-filled bucket would look like a demand drop
        logger.info("%s: last %s bucket (from %s) is incomplete and left out", table.path, fq, period_start(end, fq))
        end -= 1
    for sku, recs in rows.items():
        recs = [r for r in recs if period_index(r[1], fq) <= end]
        if not recs:
            continue
        idx = np.array([period_index(d, table.freq) for _, d, _ in recs])
        start = int(idx.min())
        y = np.zeros(end - start + 1)
        np.add.at(y, idx - start, [q for _, _, q in recs])
        filled = int(len(y) - len(np.unique(idx)))
        table.series[sku] = Series(sku, start, y, period_start(end, table.freq), filled)


def _check_series(table: SeriesTable, rows: dict[str, list[tuple[int, dt.date, float]]]) -> None:
    fq = table.freq
    for key, recs in rows.items():
        prev_line, prev_date, prev_idx = None, None, None
        for line, d, _ in recs:
            idx = period_index(d, fq)
            if prev_idx is not None and idx == prev_idx:
                raise InputError(f"{table.path}:{line}: {key}: date {d} is the same {'period' if fq != 'D' else 'day'} "
                                 f"as line {prev_line} ({prev_date}) at freq {fq}",
                                 hint="keep one row per series and period (sum duplicates), or pass the right --freq")
            if prev_idx is not None and idx < prev_idx:
                raise InputError(f"{table.path}:{line}: {key}: date {d} comes after {prev_date} (line {prev_line}); "
                                 "dates must increase within a series",
                                 hint="sort the file by unique_id, then ds")
            prev_line, prev_date, prev_idx = line, d, idx
        idx = np.array([period_index(d, fq) for _, d, _ in recs])
        start = int(idx[0])
        y = np.zeros(int(idx[-1]) - start + 1)
        y[idx - start] = [q for _, _, q in recs]
        table.series[key] = Series(key, start, y, recs[-1][1], int(len(y) - len(idx)))


def write_forecasts(path: Path | str, table: SeriesTable, results: Iterable[tuple[Series, object]]) -> int:
    """Write `key,date,forecast,lo,hi` rows (columns named like the input); returns rows written."""
    path = Path(path)
    key_col, date_col = table.columns
    n = 0
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow([key_col, date_col, "forecast", "lo", "hi"])
            for s, fc in results:
                if fc is None:
                    continue
                for d, m, lo, hi in zip(table.dates_after(s, len(fc.mean)), fc.mean, fc.lo, fc.hi):
                    w.writerow([csv_text(s.key), d.isoformat(), f"{m:.6g}", f"{lo:.6g}", f"{hi:.6g}"])
                    n += 1
        tmp.replace(path)
    except OSError as e:
        raise InputError(f"{path}: cannot write the forecast: {e.strerror}", hint="check the output folder exists and is writable") from None
    return n
