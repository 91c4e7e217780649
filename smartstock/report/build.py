"""Gather the data, analyse each SKU, draw every chart, write index.html. One entry point: build_report."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from smartstock.config import Config
from smartstock.errors import InputError
from smartstock.logs import Progress
from smartstock.report import charts_quality as CQ
from smartstock.report import charts_sales as CS
from smartstock.report import html, sources
from smartstock.report import series as S
from smartstock.inventory.history import HistoryWindow, history_window, max_gap_days
from smartstock.report.analysis import analyse_sku
from smartstock.report.charts_base import is_placeholder
from smartstock.report.model import ReportData, SkuReport
from smartstock.store.db import Store, utcnow

logger = logging.getLogger(__name__)


@dataclass
class ReportResult:
    index: Path
    charts: dict[str, Path]                     # chart key -> PNG file
    placeholders: set[str] = field(default_factory=set)  # chart keys drawn as "no data for ..." cards
    rejected: list[str] = field(default_factory=list)  # bad input rows, `FILE:LINE: reason`


def build_report(out: Path, config: Config, *, store: Store | None = None, sales_csv: Path | None = None,
                 inspections_csv: Path | None = None, model_path: Path | None = None, top_n: int = 5,
                 title: str = "SmartStock supervisor report") -> ReportResult:
    """Render the report into `out` (index.html + charts/*.png). Missing data gives placeholder charts.

    Sales come from `sales_csv` when given, else from the store; inspections likewise. Stock on hand,
    per-SKU defect rates and policy overrides come from the store when there is one.
    """
    if top_n < 1:
        raise InputError(f"--top must be at least 1, got {top_n}")
    out = Path(out)
    chart_dir = out / "charts"
    chart_dir.mkdir(parents=True, exist_ok=True)
    for old in chart_dir.glob("*.png"):  # a re-run must not leave charts of SKUs that are gone
        old.unlink()
    rejected: list[str] = []
    srcs: dict[str, str] = {}

    if sales_csv is not None:
        sales, bad = sources.sales_from_csv(sales_csv)
        rejected += bad
        srcs["sales"] = str(sales_csv)
    elif store is not None:
        sales = sources.sales_from_store(store)
        srcs["sales"] = str(store.path)
    else:
        sales = {}
        srcs["sales"] = "none"
    if inspections_csv is not None:
        inspections, bad = sources.inspections_from_csv(inspections_csv, config.inspection.good_labels)
        rejected += bad
        srcs["inspections"] = str(inspections_csv)
    elif store is not None:
        inspections = sources.inspections_from_store(store)
        srcs["inspections"] = str(store.path)
    else:
        inspections = []
    stock = _stock_levels(store)
    manifest, evaluation, model_src = sources.model_evaluation(
        model_path, store.path.parent if store is not None else None, configured=config.vision.model)

    window = _window(sales, config)
    if window.start is not None:  # a data gap is missing data, not zero demand: chart and plan the window only
        lo, hi = window.start.isoformat(), window.end.isoformat()
        sales = {k: kept for k, v in sales.items() if (kept := [(d, q) for d, q in v if lo <= str(d)[:10] <= hi])}
    skus = [SkuReport(sku, *S.daily(rows)) for sku, rows in sales.items()]
    skus.sort(key=lambda r: (-sum(r.sales), r.sku))  # biggest sellers first in every table
    top = S.top_n({r.sku: sum(r.sales) for r in skus}, top_n)
    plans = _plans(store, config, [r.sku for r in skus]) if sales_csv is None else {}
    progress = Progress("report: SKUs analysed", len(skus), log_every=max(1, len(skus) // 10))
    for i, r in enumerate(skus, 1):
        level = stock.get(r.sku)
        analyse_sku(r, config, on_hand=level["on_hand"] if level else None,
                    defect_rate=level["defect_rate"] if level else 0.0, policy_overrides=_overrides(store, r.sku),
                    model_hint=_last_model(store, r.sku), forecast=r.sku in top, plan=plans.get(r.sku))
        if window.stale and r.policy is not None:
            r.policy.stale, r.policy.stale_reason = True, window.reason
        progress(i)
    data = ReportData(title=title, generated_at=utcnow(), sources=srcs, skus=skus, inspections=inspections,
                      stock=stock, model_manifest=manifest, model_evaluation=evaluation, model_source=model_src,
                      defect_threshold=config.alerts.defect_rate_threshold)
    if window.reason:
        data.notes.append(("STALE SALES: " if window.stale else "Sales history: ") + window.reason)
    if rejected:
        data.notes.append(f"{len(rejected)} input row(s) rejected; the first: {rejected[0]}")

    charts = _draw(chart_dir, data, top)
    empty = {k for k, p in charts.items() if is_placeholder(p)}
    rel = {k: f"charts/{p.name}" for k, p in charts.items()}
    index = html.render(data, rel, out, empty=empty)
    logger.info("report written: %s (%d charts, %d without data)", index, len(charts), len(empty))
    return ReportResult(index, charts, empty, rejected)


def _draw(d: Path, data: ReportData, top: list[str]) -> dict[str, Path]:
    charts: dict[str, Path] = {
        "sales_overview": CS.sales_overview(d / "sales_overview.png", data.skus, top),
        "defect_rate": CQ.defect_rate(d / "defect_rate.png", data.inspections, data.defect_threshold),
        "defect_classes": CQ.defects_per_class(d / "defect_classes.png", data.inspections),
    }
    labels, matrix = CQ.confusion_from(data.model_evaluation, data.model_manifest)
    m = data.model_manifest or {}
    name = f"{m.get('model_id')} release {m.get('release')}" if m.get("model_id") else ""
    charts["confusion"] = CQ.confusion_matrix(d / "confusion_matrix.png", labels, matrix, data.model_source, name)
    for r in data.skus:
        if r.sku not in top:
            continue
        f = _file_id(r.sku)
        problems = "; ".join(r.problems)
        charts[f"trend:{r.sku}"] = CS.sales_trend(d / f"{f}_trend.png", r)
        charts[f"forecast:{r.sku}"] = CS.forecast_backtest(d / f"{f}_forecast.png", r.sku, r.forecast, problems)
        charts[f"policy:{r.sku}"] = CS.policy_plan(d / f"{f}_policy.png", r.sku, r.policy, r.forecast, problems)
        charts[f"phased:{r.sku}"] = CS.phased_plan(d / f"{f}_phased.png", r.sku, r.policy, problems)
        charts[f"simulation:{r.sku}"] = CS.simulation(d / f"{f}_simulation.png", r.sku, r.simulation, r.policy,
                                                      problems)
    return charts


def _window(sales: dict[str, list[tuple[str, float]]], config: Config) -> HistoryWindow:
    """The sales window plans use (`smartstock.inventory.history`), over every SKU's sale days."""
    import datetime as dt

    days = {dt.date.fromisoformat(str(d)[:10]) for rows in sales.values() for d, _ in rows}
    return history_window(sorted(days), today=dt.datetime.now(dt.timezone.utc).date(),
                          max_gap_days=max_gap_days(config.forecast))


def _plans(store: Store | None, config: Config, skus: list[str]) -> dict[str, dict]:
    """The device's plans (`plan_sku`, as `smartstock policy` and MQTT show them) when there is a store."""
    if store is None:
        return {}
    from smartstock.inventory.plan import plans_from_store

    with store.read() as conn:
        return {p["sku"]: p for p in plans_from_store(conn, config, skus)}


def _stock_levels(store: Store | None) -> dict[str, dict[str, float]]:
    if store is None:
        return {}
    from smartstock.store.stock import levels

    with store.read() as conn:  # no write lock on a store the running service writes to
        return levels(conn)


def _overrides(store: Store | None, sku: str) -> dict | None:
    """Per-SKU policy overrides kept in the store (`smartstock sku set`); they win over the config."""
    if store is None:
        return None
    from smartstock.store.skus import get_overrides

    with store.read() as conn:
        return get_overrides(conn, sku) or None


def _last_model(store: Store | None, sku: str) -> str | None:
    """The model of the device's latest forecast run for the SKU (forecast_runs), if any."""
    if store is None:
        return None
    row = store.query_one("SELECT model FROM forecast_runs WHERE sku = ? ORDER BY id DESC LIMIT 1", (sku,))
    return row[0] if row else None


def _file_id(sku: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in sku)
    return f"sku_{safe}"

