"""Parameter checks shared by the inventory formulas: one message style naming the parameter and the fix."""

from __future__ import annotations

import math

from smartstock.errors import InvalidParameter


def finite(name: str, value: float) -> float:
    """`value` as a float; NaN, infinity and non-numbers are refused."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidParameter(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise InvalidParameter(f"{name} must be a finite number, got {value!r}")
    return v


def non_negative(name: str, value: float, fix: str = "") -> float:
    v = finite(name, value)
    if v < 0:
        raise InvalidParameter(f"{name} must be >= 0, got {v:g}" + (f"; {fix}" if fix else ""))
    return v


def positive(name: str, value: float, fix: str = "") -> float:
    v = finite(name, value)
    if v <= 0:
        raise InvalidParameter(f"{name} must be > 0, got {v:g}" + (f"; {fix}" if fix else ""))
    return v


def probability_open(name: str, value: float, fix: str = "") -> float:
    """A probability strictly between 0 and 1 (a service level of 0 or 1 has no finite safety stock)."""
    v = finite(name, value)
    if not 0.0 < v < 1.0:
        raise InvalidParameter(f"{name} must be between 0 and 1 (exclusive), got {v:g}"
                               + (f"; {fix}" if fix else "; e.g. 0.95 for 95%"))
    return v


def defect_rate(value: float) -> float:
    """A defect (scrap) rate p in [0, 1): at p >= 1 no good part is ever made."""
    v = finite("defect_rate", value)
    if not 0.0 <= v < 1.0:
        raise InvalidParameter(f"defect_rate must be in [0, 1), got {v:g}; "
                               "at 100% scrap no good part is made: fix the process or the inspection thresholds")
    return v
