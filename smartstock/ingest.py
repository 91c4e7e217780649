"""Streaming reader for sales CSV exports: one valid row or one row error at a time, in bounded memory.

Accepted: header `sku,date,quantity[,price]` or `unique_id,ds,y` (Nixtla style; other columns such as
M3's `category` are ignored), case and spaces in names ignored; UTF-8 with or without BOM; `,`, `;` or
tab separator (sniffed from the header line; with `;` a decimal comma `12,5` is read as 12.5); blank
lines skipped. Dates: `YYYY-MM-DD`, `YYYY-MM` (first of the month) or a timestamp
`YYYY-MM-DD HH:MM[:SS]` / `YYYY-MM-DDTHH:MM[:SS]` (the date part counts).
Quantity must be a finite number >= 0 and below MAX_QUANTITY: a negative quantity is a return, not a
sale, and is rejected with that reason (book returns as a stock adjustment instead). Dates must lie
between MIN_SALE_DATE and today + FUTURE_TOLERANCE_DAYS: a sale dated next year is a typo or a wrong
date format, and one such row would otherwise pad every SKU's history with zeros up to that day.
Each bad row is rejected on its own with its line; the good rows are kept.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal, NamedTuple

from smartstock.errors import InputError
from smartstock.sku import SKU_RULE, sku_problem

logger = logging.getLogger(__name__)

MAX_LINE_CHARS = 64 * 1024  # longer physical lines are rejected instead of read into memory
MAX_QUANTITY = 1e9  # units in one sales row; more is a unit or column mix-up, and sums must stay finite
MIN_SALE_DATE = dt.date(1970, 1, 1)
FUTURE_TOLERANCE_DAYS = 1  # time zones: a shop ahead of UTC may already book tomorrow's date
NAMINGS: dict[str, tuple[str, str, str]] = {
    "sku": ("sku", "date", "quantity"),
    "unique_id": ("unique_id", "ds", "y"),
}
_DATE_RE = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?)?$")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_BAD_CHARS = re.compile("[\x00\udc80-\udcff]")  # NUL, or bytes that were not UTF-8 (surrogate escapes)


class SalesRow(NamedTuple):
    """One valid sale: quantity sold of `sku` on `date` (line = first physical line of the record)."""

    line: int
    sku: str
    date: dt.date
    quantity: float
    price: float | None = None


class RowError(NamedTuple):
    """A rejected record and why; `line` is the physical line number in the file (header = 1)."""

    line: int
    reason: str


class SalesCsv:
    """An open sales CSV: header checked at construction, rows streamed by iteration.

    `naming` says which header style the file used ("sku" or "unique_id") so output can mirror it;
    `columns` holds the file's own spelling of (sku, date, quantity) and `price_column` (or None).
    """

    def __init__(self, path: Path | str, *, today: dt.date | None = None,
                 min_date: dt.date = MIN_SALE_DATE) -> None:
        self.path = Path(path)
        self.today = today
        self.min_date = min_date
        try:
            self._f: IO[str] = open(self.path, encoding="utf-8-sig", errors="surrogateescape", newline="")
        except FileNotFoundError:
            raise InputError(f"{self.path}: file not found", hint="check the path of the sales CSV") from None
        except IsADirectoryError:
            raise InputError(f"{self.path}: is a directory, expected a CSV file") from None
        except OSError as e:
            raise InputError(f"{self.path}: cannot read: {e.strerror}") from None
        self._too_long: list[int] = []
        self._physical = 0
        try:
            self._lines = self._line_iter()
            self._header_line, header = self._read_header()
        except BaseException:
            self._f.close()
            raise

        self.delimiter = header[1]
        names = [n.strip().lower() for n in header[0]]
        self.header = header[0]
        for style, cols in NAMINGS.items():
            if all(c in names for c in cols):
                self.naming: Literal["sku", "unique_id"] = style  # type: ignore[assignment]
                self._idx = [names.index(c) for c in cols]
                break
        else:
            self._f.close()
            found = ", ".join(repr(n) for n in self.header) or "(none)"
            raise InputError(f"{self.path}:{self._header_line}: missing required columns; found {found}",
                             hint="the header must name sku,date,quantity (optional price) or unique_id,ds,y")
        self.columns = tuple(self.header[i].strip() for i in self._idx)
        self._price_idx = names.index("price") if self.naming == "sku" and "price" in names else None
        self.price_column = self.header[self._price_idx].strip() if self._price_idx is not None else None

    # -- reading --------------------------------------------------------------------------------
    def _line_iter(self) -> Iterator[str]:
        """Physical lines, each at most MAX_LINE_CHARS; a longer one is skipped and remembered."""
        while True:
            line = self._f.readline(MAX_LINE_CHARS)
            if not line:
                return
            self._physical += 1
            if len(line) >= MAX_LINE_CHARS and not line.endswith(("\n", "\r")):
                while True:  # drain the rest of the over-long line without keeping it
                    rest = self._f.readline(MAX_LINE_CHARS)
                    if not rest or rest.endswith(("\n", "\r")):
                        break
                self._too_long.append(self._physical)
                line = "\n"
            yield line

    def _read_header(self) -> tuple[int, tuple[list[str], str]]:
        for line in self._lines:
            if line.strip() == "":
                if self._too_long:
                    raise InputError(f"{self.path}:{self._too_long[0]}: header line longer than {MAX_LINE_CHARS} characters",
                                     hint="is this a CSV file?")
                continue
            if _has_bad_chars(line):
                raise InputError(f"{self.path}:{self._physical}: header is not UTF-8 text",
                                 hint="save the export as UTF-8 CSV")
            delimiter = max((";", ",", "\t"), key=line.count) if any(c in line for c in ";,\t") else ","
            try:
                header = next(csv.reader([line], delimiter=delimiter))
            except (csv.Error, StopIteration) as e:
                raise InputError(f"{self.path}:{self._physical}: unreadable header: {e}") from None
            return self._physical, (header, delimiter)
        raise InputError(f"{self.path}: empty file, no header line",
                         hint="the first line must name the columns: sku,date,quantity[,price] or unique_id,ds,y")

    def __iter__(self) -> Iterator[SalesRow | RowError]:
        reader = csv.reader(self._lines, delimiter=self.delimiter, strict=False)
        need = max(self._idx) + 1  # price is optional, also as a missing trailing field
        width = len(self.header)
        while True:
            start = self._physical + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                yield from self._drain_too_long()
                yield RowError(start, f"unreadable CSV record: {e}")
                continue
            yield from self._drain_too_long()
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) < need:
                yield RowError(start, f"{len(fields)} field(s) but the header has {width}; check the separator "
                                      f"({self.delimiter!r} was detected from the header)")
                continue
            if len(fields) > width and any(f.strip() for f in fields[width:]):
                yield RowError(start, f"{len(fields)} fields but the header has {width}; quote values that contain "
                                      f"{self.delimiter!r}")
                continue
            yield self._parse(start, fields)
        yield from self._drain_too_long()

    def _drain_too_long(self) -> Iterator[RowError]:
        while self._too_long:
            yield RowError(self._too_long.pop(0), f"line longer than {MAX_LINE_CHARS} characters")

    def _parse(self, line: int, fields: list[str]) -> SalesRow | RowError:
        sku_col, date_col, qty_col = self.columns
        raw_sku, raw_date, raw_qty = (fields[i].strip() for i in self._idx)
        if any(_has_bad_chars(v) for v in (raw_sku, raw_date, raw_qty)):
            return RowError(line, "not valid UTF-8 text")
        if not raw_sku:
            return RowError(line, f"empty {sku_col}")
        if sku_problem(raw_sku):
            return RowError(line, f"{sku_col} {raw_sku[:80]!r} is not valid: {SKU_RULE}")
        day = parse_date(raw_date)
        if day is None:
            return RowError(line, f"{date_col} {raw_date[:40]!r} is not a date (expected YYYY-MM-DD, YYYY-MM or "
                                  "YYYY-MM-DD HH:MM:SS)")
        why = date_problem(day, today=self.today, min_date=self.min_date)
        if why:
            return RowError(line, f"{date_col} {raw_date[:40]!r} {why}")
        qty, why = self._number(raw_qty)
        if qty is None:
            return RowError(line, f"{qty_col} {raw_qty[:40]!r} {why}")
        if qty > MAX_QUANTITY:
            return RowError(line, f"{qty_col} {raw_qty[:40]!r} is implausibly large (more than {MAX_QUANTITY:g} units "
                                  "in one row); check the column order and the unit")
        if qty < 0:
            return RowError(line, f"{qty_col} {raw_qty[:40]!r} is negative: returns are not sales (book them with "
                                  "`smartstock stock move SKU adjusted QTY`)")
        price = None
        if self._price_idx is not None and self._price_idx < len(fields) and fields[self._price_idx].strip():
            raw_price = fields[self._price_idx].strip()
            if _has_bad_chars(raw_price):
                return RowError(line, "not valid UTF-8 text")
            price, why = self._number(raw_price)
            if price is None or price < 0:
                return RowError(line, f"{self.price_column} {raw_price[:40]!r} {why or 'is negative'}")
        return SalesRow(line, raw_sku, day, qty, price)

    def _number(self, raw: str) -> tuple[float | None, str]:
        if not raw:
            return None, "is empty"
        text = raw.replace(",", ".") if self.delimiter == ";" and _DECIMAL_COMMA.match(raw) else raw
        try:
            v = float(text)
        except ValueError:
            return None, "is not a number"
        if not math.isfinite(v):
            return None, "is not a finite number"
        return v, ""

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "SalesCsv":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _has_bad_chars(text: str) -> bool:
    """True when the text holds bytes that were not UTF-8 (surrogate escapes) or NUL characters."""
    return _BAD_CHARS.search(text) is not None


def parse_date(raw: str) -> dt.date | None:
    """ISO date, year-month (first of the month) or timestamp (its date); None when not a valid date."""
    m = _DATE_RE.match(raw.strip())
    if not m:
        return None
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3) or 1))
    except ValueError:
        return None


def date_problem(day: dt.date, *, today: dt.date | None = None, min_date: dt.date = MIN_SALE_DATE) -> str:
    """Why a sale date cannot be right ('' when it can): after today (+ tolerance) or before `min_date`.

    One rule for every way sales arrive (CSV import, `forecast` file input, MQTT sales/in).
    """
    today = today or dt.datetime.now(dt.timezone.utc).date()
    latest = today + dt.timedelta(days=FUTURE_TOLERANCE_DAYS)
    if day > latest:
        return (f"is in the future (after {latest}); fix the date or its format (YYYY-MM-DD), "
                "or set the device clock")
    if day < min_date:
        return f"is implausibly old (before {min_date}); fix the date or its format (YYYY-MM-DD)"
    return ""


def open_sales_csv(path: Path | str, *, today: dt.date | None = None) -> SalesCsv:
    """Open a sales CSV and check its header (raises InputError naming the columns found and expected)."""
    return SalesCsv(path, today=today)


def iter_sales_csv(path: Path | str) -> Iterator[SalesRow | RowError]:
    """Every record of a sales CSV as a `SalesRow` or a `RowError`, streamed; the file is closed at the end."""
    with open_sales_csv(path) as f:
        yield from f
