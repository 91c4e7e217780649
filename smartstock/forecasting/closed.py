"""Closed days: a season position (a weekday, say) that (almost) never sells is a closed day.

The forecast there is exactly 0, and the models see only the open days, so a closed Sunday does
not drag Monday to Saturday down nor teach the model a spurious zero-demand level.
"""

from __future__ import annotations

import numpy as np

MIN_SEASONS = 4  # observations of each position needed before calling it closed
MAX_OPEN_SHARE = 0.05  # a position selling in at most this share of its periods is closed
LOOKBACK_SEASONS = 12  # only recent opening hours count


def closed_positions(y: np.ndarray, m: int) -> np.ndarray | None:
    """Boolean mask over the m season positions (position of y[0] is 0), or None when none is closed."""
    y = np.asarray(y, float)
    n = len(y)
    if m < 2 or n < MIN_SEASONS * m:
        return None
    start = max(0, n - LOOKBACK_SEASONS * m)
    pos = np.arange(start, n) % m
    sells = y[start:] > 0
    share = np.array([np.mean(sells[pos == p]) for p in range(m)])
    closed = share <= MAX_OPEN_SHARE
    # only a shop that is otherwise open most days has closed days; intermittent demand has none
    if not closed.any() or closed.all() or np.min(share[~closed]) < 0.5:
        return None
    return closed


def open_mask(closed: np.ndarray, start: int, length: int) -> np.ndarray:
    """True for the open periods among positions start..start+length-1."""
    return ~closed[(start + np.arange(length)) % len(closed)]
