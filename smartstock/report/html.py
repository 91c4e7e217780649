"""index.html of the supervisor report: summary table first, then one section per chart group.

Charts are PNG files in `charts/` beside index.html, linked relatively, so the folder can be zipped,
copied to a share or opened straight from a USB stick. CSS is inline; nothing is fetched.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

from smartstock.report.model import ReportData, SkuReport

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;margin:0;background:#f4f6f8}
header{background:#1f3b57;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85;font-size:13px}main{max-width:1180px;margin:0 auto;padding:12px 28px 40px}
nav{margin:14px 0;font-size:13px}nav a{margin-right:12px;color:#2e86c1;text-decoration:none}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:16px 20px;margin:18px 0}
h2{font-size:18px;margin:0 0 10px;color:#1f3b57}h3{font-size:15px;margin:18px 0 6px}
img.chart{max-width:100%;height:auto;display:block;margin:8px 0;border:1px solid #e3e7eb;border-radius:4px}
table{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0}
.scroll{overflow-x:auto}th,td{padding:5px 7px;border-bottom:1px solid #e3e7eb;text-align:right;white-space:nowrap}
th{background:#eef2f5;color:#1f3b57;font-weight:600;white-space:normal;vertical-align:bottom}th:first-child,td:first-child{text-align:left}
td.bad{color:#c0392b;font-weight:600}td.ok{color:#2c7a3f;font-weight:600}
.note{color:#52606d;font-size:12.5px}.problem{color:#c0392b;font-size:12.5px}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0}.kpi{background:#eef2f5;border-radius:6px;padding:8px 12px;min-width:120px}
.kpi b{display:block;font-size:18px;color:#1f3b57}.kpi span{font-size:12px;color:#52606d}
"""


def render(data: ReportData, charts: dict[str, str], out: Path, *, empty: set[str] | None = None) -> Path:
    """Write index.html; `charts` maps a chart key to its path relative to index.html; `empty` holds the
    keys drawn as no-data cards (their alt text says so)."""
    imgs = {k: (rel, k in (empty or ())) for k, rel in charts.items()}
    top = [r for r in data.skus if f"trend:{r.sku}" in imgs]
    rest = [r for r in data.skus if r not in top]
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
             f"<title>{escape(data.title)}</title><style>{CSS}</style></head><body>",
             f"<header><h1>{escape(data.title)}</h1><p>Generated {escape(data.generated_at)} · "
             + " · ".join(f"{escape(k)}: {escape(v)}" for k, v in data.sources.items()) + "</p></header><main>",
             "<nav><a href='#summary'>Summary</a><a href='#sales'>Sales</a><a href='#quality'>Quality</a>"
             + "".join(f"<a href='#sku-{_id(r.sku)}'>{escape(r.sku)}</a>" for r in top) + "</nav>",
             _summary(data),
             _section("sales", "Sales", [_img(imgs, "sales_overview", "Monthly sales of the top SKUs")],
                      f"Top {len(top)} of {len(data.skus)} SKU(s) by units sold get their own section below."
                      if data.skus else ""),
             _quality(data, imgs)]
    for r in top:
        parts.append(_sku_section(r, imgs))
    if rest:
        parts.append(_section("other-skus", "Other SKUs", [_sku_table(rest)],
                              "Figures only, with demand from the sales history (no forecast backtest); run the "
                              "report with a larger --top to chart and forecast them."))
    if data.notes:
        parts.append(_section("notes", "Notes", ["<ul>" + "".join(f"<li>{escape(n)}</li>" for n in data.notes)
                                                 + "</ul>"], ""))
    parts.append("</main></body></html>\n")
    path = out / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _summary(data: ReportData) -> str:
    parts = sum(1 for _ in data.inspections)
    bad = sum(1 for i in data.inspections if i.is_defect)
    sims = [r.simulation.result for r in data.skus if r.simulation]
    demand = sum(s.demand_total for s in sims)
    served = sum(s.served_total for s in sims)
    kpis = [("SKUs", f"{len(data.skus)}"),
            ("parts inspected", f"{parts:,}"),
            ("defect rate", f"{bad / parts:.2%}" if parts else "–"),
            ("simulated fill rate", f"{served / demand:.1%}" if demand else "–"),
            ("simulated stock-outs", f"{sum(s.stockout_events for s in sims)}" if sims else "–"),
            ("holding + ordering cost", _money(sum(s.total_cost for s in sims)) if sims else "–")]
    body = "<div class='kpis'>" + "".join(f"<div class='kpi'><b>{escape(v)}</b><span>{escape(k)}</span></div>"
                                          for k, v in kpis) + "</div>"
    body += _sku_table(data.skus)
    note = ("Service level and costs come from replaying each SKU's (s, Q) policy day by day against its actual "
            "demand (lost sales; orders arrive after the lead time). Fill rate = units served from stock / demand; "
            "cycle service level = replenishment cycles without a stock-out / all cycles; cost = holding + ordering "
            "over the replayed days.")
    return _section("summary", "Summary", [body], note)


def _sku_table(skus: list[SkuReport]) -> str:
    head = ["SKU", "demand/day", "basis", "on hand", "model", "MASE", "coverage", "EOQ", "safety stock", "reorder point",
            "target", "fill rate", "cycle SL", "stock-outs", "orders", "cost"]
    rows = []
    for r in skus:
        p, f, s = r.policy, r.forecast, r.simulation.result if r.simulation else None
        target = p.service_level if p else None
        judged = 11 if p and p.service_type == "fill_rate" else 12  # the column the target is about
        achieved = (s.fill_rate if judged == 11 else s.cycle_service_level) if s else None
        cls = "" if achieved is None or target is None or math.isnan(achieved) else ("ok" if achieved >= target else "bad")
        cells = [f"<a href='#sku-{_id(r.sku)}'>{escape(r.sku)}</a>",
                 _num(p.demand_per_day, 2) if p else "–",
                 (f"<span title='{escape(p.demand_source)}'>{escape(p.demand_basis or p.demand_source)}</span>"
                  + (" <b class='problem'>stale</b>" if p.stale else "")) if p else "–",
                 (_num(p.on_hand, 0) + ("" if p.on_hand_known else "*")) if p else "–",
                 f"<span title='{escape(f.model)}'>{escape(_short_model(f.model))}</span>" if f else "–",
                 _num(f.metrics.get("MASE"), 2) if f else "–",
                 _pct(f.metrics.get("coverage")) if f else "–",
                 _num(p.eoq, 0) if p else "–", _num(p.safety_stock, 0) if p else "–",
                 _num(p.reorder_point, 0) if p else "–",
                 f"{_pct(target)} {'FR' if p and p.service_type == 'fill_rate' else 'CSL'}" if p else "–",
                 _pct(s.fill_rate) if s else "–", _pct(s.cycle_service_level) if s else "–",
                 f"{s.stockout_events} ({len(s.short_days)} d)" if s else "–",
                 str(s.orders) if s else "–", _money(s.total_cost) if s else "–"]
        rows.append("<tr>" + "".join(f"<td class='{cls}'>{c}</td>" if i == judged else f"<td>{c}</td>"
                                     for i, c in enumerate(cells)) + "</tr>")
    if not rows:
        rows.append(f"<tr><td colspan='{len(head)}'>no SKUs with sales</td></tr>")
    return ("<div class='scroll'><table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div><p class='note'>* on hand unknown (no stock in the store): "
            "the plan starts from s + Q. Target: CSL = cycle service level, FR = fill rate; achieved values in "
            "green meet it, red miss it.</p>")


def _quality(data: ReportData, charts: Imgs) -> str:
    m = data.model_manifest or {}
    model = (f"Model <b>{escape(str(m.get('model_id', '?')))}</b> release {escape(str(m.get('release', '?')))}, "
             f"labels {escape(', '.join(map(str, m.get('labels', []))))}" if m else
             f"Model: none to show ({escape(data.model_source)})")
    acc = _accuracy(data.model_evaluation, m)
    where = f" · evaluation from {escape(data.model_source)}" if m else ""
    body = [f"<p class='note'>{model}{' · accuracy ' + acc if acc else ''}{where}</p>",
            _img(charts, "defect_rate", "Defect rate over time"),
            _img(charts, "defect_classes", "Inspections per class"),
            _img(charts, "confusion", "Confusion matrix")]
    return _section("quality", "Quality", body, "")


def _sku_section(r: SkuReport, charts: Imgs) -> str:
    body = [_img(charts, f"trend:{r.sku}", f"{r.sku} sales trend"),
            _img(charts, f"forecast:{r.sku}", f"{r.sku} forecast vs actual"),
            _img(charts, f"policy:{r.sku}", f"{r.sku} EOQ and reorder point"),
            _img(charts, f"phased:{r.sku}", f"{r.sku} time-phased plan"),
            _img(charts, f"simulation:{r.sku}", f"{r.sku} simulated stock")]
    notes = []
    if r.policy:
        p = r.policy
        notes.append(f"Demand {p.demand_per_day:,.4g}/day (σ {p.demand_std_per_day:,.4g}) from "
                     f"{p.demand_basis or p.demand_source}; order cost {_money(p.order_cost)}, holding "
                     f"{_money(p.holding_cost)}/unit/year, lead time {p.lead_time_days:g} days, defect rate "
                     f"{p.defect_rate:.1%}; EOQ {p.eoq:,.2f}, start {p.start_quantity:,.2f} per order for "
                     f"{p.lot_size:,.2f} good; safety stock {p.safety_stock:,.2f}, reorder point "
                     f"{p.reorder_point:,.2f}" + (f" (plan as of {p.as_of})" if p.as_of else "") + ".")
        notes += p.notes
        if p.horizon:
            orders = [h for h in p.horizon if h.get("order_total")]
            notes.append(f"Time-phased plan over {len(p.horizon)} periods: " + (
                "orders in the periods starting " + ", ".join(f"{h['start']} ({h['order_total']:,.0f})"
                                                              for h in orders[:6])
                if orders else "no order needed within the horizon") + ".")
    if r.simulation:
        notes.append(f"Simulation: {r.simulation.policy_basis}.")
        notes += r.simulation.result.notes
    if r.forecast and r.forecast.windows:
        f = r.forecast
        notes.append(f"Backtest: {len(f.windows)} rolling origins × {len(f.windows[0].dates)} periods, "
                     f"{f.level:.0%} intervals, model {f.model}.")
    html = "".join(f"<p class='note'>{escape(n)}</p>" for n in notes)
    if r.policy and r.policy.stale:
        html += f"<p class='problem'>Stale sales: {escape(r.policy.stale_reason)}</p>"
    html += "".join(f"<p class='problem'>{escape(p)}</p>" for p in r.problems)
    return _section(f"sku-{_id(r.sku)}", f"SKU {r.sku}", body + [html], "")


def _section(anchor: str, title: str, body: list[str], note: str) -> str:
    return (f"<section id='{escape(anchor)}'><h2>{escape(title)}</h2>" + "".join(body)
            + (f"<p class='note'>{escape(note)}</p>" if note else "") + "</section>")


Imgs = dict[str, tuple[str, bool]]  # chart key -> (relative path, is a no-data card)


def _img(charts: Imgs, key: str, alt: str) -> str:
    if key not in charts:
        return ""
    rel, empty = charts[key]
    if empty:
        alt = f"no data for {alt}"
    return f"<img class='chart' src='{escape(rel)}' alt='{escape(alt)}' loading='lazy'>"


def _accuracy(evaluation: dict[str, Any] | None, manifest: dict[str, Any]) -> str:
    for doc in (evaluation or {}, manifest.get("metrics") or {}):
        for key in ("accuracy", "test_accuracy"):
            v = doc.get(key)
            if isinstance(v, (int, float)):
                return f"{v:.2%}"
    return ""


def _short_model(label: str) -> str:
    """`auto: ets (device's choice)` -> `ets`; the full label stays in the cell's tooltip and the chart."""
    return label.split(":")[-1].split("(")[0].strip() or label


def _id(sku: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in sku)


def _num(v: float | None, digits: int) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:,.{digits}f}"


def _pct(v: float | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.1%}"


def _money(v: float | None) -> str:
    from smartstock.inventory.plan import money

    return money(v)
