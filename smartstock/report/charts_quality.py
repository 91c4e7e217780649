"""Quality charts: defect rate over time, defects per class, the model's confusion matrix."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from smartstock.report.charts_base import COLORS, date_axis, figure, placeholder, save, style
from smartstock.report.model import Inspection


def defect_rate(path: Path, inspections: list[Inspection], threshold: float) -> Path:
    """Defect rate per hour or per day (chosen by the time span), with the parts count behind it."""
    title = "Defect rate over time"
    if not inspections:
        return placeholder(path, title, "no inspections in the store or the --inspections CSV")
    span = max(i.ts for i in inspections) - min(i.ts for i in inspections)
    step, unit = _step_for(span)
    buckets: dict[dt.datetime, list[int]] = {}
    for i in inspections:
        key = _floor(i.ts, step)
        b = buckets.setdefault(key, [0, 0])
        b[0] += 1
        b[1] += int(i.is_defect)
    keys = sorted(buckets)
    parts = [buckets[k][0] for k in keys]
    rate = [100.0 * buckets[k][1] / buckets[k][0] for k in keys]
    fig, ax = figure(9.0, 3.6)
    ax2 = ax.twinx()
    width = step.total_seconds() / 86400 * 0.8
    ax2.bar(keys, parts, width=width, align="edge", color=COLORS["muted"], alpha=0.35, label=f"parts per {unit}")
    ax2.set_ylim(0, max(parts) * 3)  # bars in the lower third, behind the rate line
    ax2.set_ylabel(f"parts inspected per {unit}", fontsize=9, color=COLORS["muted"])
    ax2.tick_params(labelsize=8, colors=COLORS["muted"])
    ax2.spines["top"].set_visible(False)
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    mid = [k + step / 2 for k in keys]
    ax.plot(mid, rate, color=COLORS["short"], lw=1.8, marker="o", ms=3, label=f"defect rate per {unit}")
    ax.axhline(100 * threshold, color=COLORS["rop"], ls="--", lw=1.1, label=f"alert threshold {threshold:.0%}")
    total = len(inspections)
    bad = sum(i.is_defect for i in inspections)
    style(ax, f"{title} — {bad:,} defective of {total:,} parts ({bad / total:.1%})", "time (UTC)", "defect rate (%)")
    ax.set_ylim(0, max(max(rate), 100 * threshold) * 1.25 + 0.5)
    date_axis(ax)
    lines = ax.get_legend_handles_labels()
    bars = ax2.get_legend_handles_labels()
    fig.legend(lines[0] + bars[0], lines[1] + bars[1], loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return save(fig, path)


def defects_per_class(path: Path, inspections: list[Inspection]) -> Path:
    """How many parts each label got; defect labels red, good labels green."""
    title = "Inspections per class"
    if not inspections:
        return placeholder(path, title, "no inspections in the store or the --inspections CSV")
    counts: dict[str, list[int]] = {}
    for i in inspections:
        c = counts.setdefault(i.label, [0, 0])
        c[0] += 1
        c[1] = c[1] or int(i.is_defect)
    labels = sorted(counts, key=lambda k: (-counts[k][0], k))
    total = len(inspections)
    fig, ax = figure(9.0, max(2.4, 0.9 + 0.42 * len(labels)))
    vals = [counts[k][0] for k in labels]
    colors = [COLORS["short"] if counts[k][1] else COLORS["good"] for k in labels]
    ax.barh(labels, vals, color=colors)
    ax.invert_yaxis()
    for y, v in enumerate(vals):
        ax.text(v, y, f"  {v:,} ({v / total:.1%})", va="center", fontsize=8)
    ax.set_xlim(0, max(vals) * 1.25)
    style(ax, f"{title} (red: defect, green: good)", "parts", "class")
    ax.grid(axis="y", visible=False)
    return save(fig, path)


def confusion_matrix(path: Path, labels: list[str] | None, matrix: list[list[float]] | None, source: str,
                     model_name: str = "") -> Path:
    """Rows: true class, columns: predicted; colour by row share so small classes stay visible."""
    title = "Confusion matrix of the current model"
    if not labels or not matrix or len(matrix) != len(labels) or any(len(r) != len(labels) for r in matrix):
        return placeholder(path, title, f"no evaluation with a confusion matrix ({source})")
    n = len(labels)
    size = min(7.5, 2.6 + 0.7 * n)
    fig, ax = figure(size + 1.2, size)
    shares = [[v / s if (s := sum(row)) else 0.0 for v in row] for row in matrix]
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for r in range(n):
        for c in range(n):
            v = matrix[r][c]
            ax.text(c, r, f"{v:,.0f}\n{shares[r][c]:.1%}", ha="center", va="center", fontsize=10 if n <= 4 else 8,
                    color="white" if shares[r][c] > 0.6 else COLORS["actual"])
    ax.set_xticks(range(n), labels, rotation=30 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax.set_yticks(range(n), labels)
    style(ax, title + (f"\n{model_name}" if model_name else ""), "predicted class", "true class")
    ax.grid(False)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class")
    return save(fig, path)


def confusion_from(evaluation: dict[str, Any] | None, manifest: dict[str, Any] | None) -> tuple[list[str] | None,
                                                                                             list[list[float]] | None]:
    """Find labels + matrix in an evaluation report or a manifest's metrics, whichever has them.

    Accepted shapes: {"confusion_matrix": [[..]], "labels": [..]}, {"confusion": {"labels": [..],
    "matrix": [[..]]}}, or a dict of dicts {"true": {"pred": n}}, at the top level or under "metrics"
    or "test"/"eval".
    """
    for doc in (evaluation, manifest):
        if not isinstance(doc, dict):
            continue
        for scope in _scopes(doc):
            labels = scope.get("labels") or (doc.get("labels") if isinstance(doc.get("labels"), list) else None)
            for key in ("confusion_matrix", "confusion"):
                cm = scope.get(key)
                if isinstance(cm, dict) and "matrix" in cm:
                    return list(cm.get("labels") or labels or []), cm["matrix"]
                if isinstance(cm, dict) and cm and all(isinstance(v, dict) for v in cm.values()):
                    names = list(cm)
                    return names, [[float(cm[t].get(p, 0)) for p in names] for t in names]
                if isinstance(cm, list) and labels:
                    return list(labels), cm
    return None, None


def _scopes(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = [doc] + [v for v in doc.values() if isinstance(v, dict)]
    for key in ("metrics", "evaluation", "test", "eval", "holdout"):
        sub = doc.get(key)
        if isinstance(sub, dict):
            out += [sub] + [v for v in sub.values() if isinstance(v, dict)]
    return out


STEPS = [(dt.timedelta(seconds=1), "s"), (dt.timedelta(seconds=10), "10 s"), (dt.timedelta(minutes=1), "min"),
         (dt.timedelta(minutes=10), "10 min"), (dt.timedelta(hours=1), "hour"), (dt.timedelta(days=1), "day"),
         (dt.timedelta(days=7), "week")]


def _step_for(span: dt.timedelta, max_buckets: int = 60) -> tuple[dt.timedelta, str]:
    """The finest round bucket that keeps the chart to at most `max_buckets` points."""
    for step, unit in STEPS:
        if span / step <= max_buckets:
            return step, unit
    return STEPS[-1]


def _floor(ts: dt.datetime, step: dt.timedelta) -> dt.datetime:
    epoch = dt.datetime(2000, 1, 3, tzinfo=ts.tzinfo)  # a Monday, so weekly buckets start on Mondays
    n = (ts - epoch) // step
    return epoch + n * step
