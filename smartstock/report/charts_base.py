"""Shared plotting plumbing: lazy matplotlib (Agg, no pyplot state), one palette, the no-data card.

Charts are drawn on `matplotlib.figure.Figure` objects directly, never through pyplot, so rendering
holds no global state and works without a display.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from smartstock.errors import BackendUnavailable

logger = logging.getLogger(__name__)

# One colour per meaning, used by every chart and by the HTML (keep them in sync with the CSS in report/html.py).
COLORS = {
    "actual": "#1f3b57",      # what happened (sales, demand)
    "forecast": "#e07b00",    # what the model expected
    "interval": "#f5c27a",    # its prediction interval
    "stock": "#2c7a3f",       # stock on hand
    "rop": "#c0392b",         # reorder point
    "safety": "#8e44ad",      # safety stock
    "order": "#2e86c1",       # orders / EOQ
    "short": "#d62728",       # stock-outs, defects
    "good": "#2c7a3f",
    "muted": "#9aa5b1",
    "grid": "#e3e7eb",
}
SERIES = ["#1f3b57", "#e07b00", "#2c7a3f", "#8e44ad", "#2e86c1", "#c0392b", "#7f6000", "#17becf"]
DPI = 110


def figure(width_in: float = 9.0, height_in: float = 3.6, **subplots: Any) -> tuple[Any, Any]:
    """A Figure with its axes; imports matplotlib only now, with the Agg canvas."""
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError as e:
        raise BackendUnavailable(f"charts need matplotlib ({e})",
                                 hint="pip install 'smartstock[report]'") from None
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    axes = fig.subplots(**subplots) if subplots else fig.subplots()
    return fig, axes


def style(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, color=COLORS["grid"], linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def date_axis(ax: Any) -> None:
    """Compact, non-overlapping date ticks."""
    import matplotlib.dates as mdates

    loc = mdates.AutoDateLocator(minticks=4, maxticks=9)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))


def legend(ax: Any, **kw: Any) -> None:
    """In-axes legend on a light box, placed where it hides the least data."""
    opts = {"fontsize": 8, "loc": "best", "frameon": True, "framealpha": 0.85, "edgecolor": COLORS["grid"]}
    ax.legend(**{**opts, **kw})


def legend_below(fig: Any, ax: Any, ncols: int = 4) -> None:
    """Legend under the plot, for charts whose data fills the whole axes."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=8, frameon=False)


PLACEHOLDER_MARK = "smartstock: no data"


def save(fig: Any, path: Path, *, description: str = "smartstock chart") -> Path:
    """Write the PNG; the Description text chunk says whether it is a chart or a no-data card."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Description": description, "Software": "smartstock report"})
    logger.debug("chart written: %s", path)
    return path


def placeholder(path: Path, title: str, reason: str, width_in: float = 9.0, height_in: float = 2.4) -> Path:
    """A card that says plainly which data is missing, instead of an empty or broken chart."""
    fig, ax = figure(width_in, height_in)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color(COLORS["grid"])
    ax.set_facecolor("#f8f9fa")
    ax.set_title(title, fontsize=11, loc="left")
    ax.text(0.5, 0.55, f"no data for {title.lower()}", ha="center", va="center", fontsize=13,
            color=COLORS["muted"], weight="bold", transform=ax.transAxes)
    ax.text(0.5, 0.3, reason, ha="center", va="center", fontsize=9, color=COLORS["muted"],
            transform=ax.transAxes, wrap=True)
    return save(fig, path, description=f"{PLACEHOLDER_MARK}: {title}: {reason}")


def is_placeholder(path: Path) -> bool:
    """True when the PNG is a no-data card (reads the text chunks; no image library needed)."""
    import struct
    import zlib

    data = Path(path).read_bytes()
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and body.startswith(b"Description\0"):
            return body.split(b"\0", 1)[1].decode("latin-1").startswith(PLACEHOLDER_MARK)
        if kind == b"zTXt" and body.startswith(b"Description\0"):
            return zlib.decompress(body.split(b"\0", 1)[1][1:]).decode("latin-1").startswith(PLACEHOLDER_MARK)
        if kind == b"IDAT":
            break
        pos += 12 + length
    return False
