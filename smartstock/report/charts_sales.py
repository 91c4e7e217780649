"""Demand-side charts: sales trend, forecast vs actual over the backtest, policy plan, (s,Q) replay."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from smartstock.report import series as S
from smartstock.report.charts_base import COLORS, SERIES, date_axis, figure, legend, legend_below, placeholder, save, style
from smartstock.report.model import ForecastView, PolicyView, SimulationView, SkuReport
from smartstock.report.simulate import simulate_sq

UNIT = {"D": "day", "W": "week", "M": "month", "Q": "quarter"}


def sales_overview(path: Path, skus: list[SkuReport], top: list[str]) -> Path:
    """Monthly sales of the top SKUs, the rest summed into one grey line so the chart stays readable."""
    title = "Monthly sales, top SKUs"
    if not any(r.days for r in skus):
        return placeholder(path, title, "no sales in the store or the --sales CSV")
    fig, ax = figure(9.0, 3.8)
    others_days: list[dt.date] = []
    others_vals: list[float] = []
    for r in skus:
        if r.sku in top:
            continue
        others_days += r.days
        others_vals += r.sales
    by_sku = {r.sku: r for r in skus}
    for i, sku in enumerate(top):  # legend in rank order
        m, v = S.complete_buckets(by_sku[sku].days, by_sku[sku].sales, "M")
        ax.plot(m, v, marker="o", ms=3, lw=1.6, color=SERIES[i % len(SERIES)], label=sku)
    if others_days:
        od, ov = S.daily(zip(others_days, others_vals))
        m, v = S.complete_buckets(od, ov, "M")
        ax.plot(m, v, lw=1.2, ls="--", color=COLORS["muted"], label=f"{len(skus) - len(top)} other SKUs")
    style(ax, title, "month", "units sold per month")
    date_axis(ax)
    ax.set_ylim(bottom=0)
    legend(ax, ncols=min(4, len(top) + 1))
    return save(fig, path)


def sales_trend(path: Path, r: SkuReport) -> Path:
    """Weekly and monthly totals of one SKU (complete buckets only, so the ends do not dip)."""
    title = f"{r.sku}: sales trend"
    if not r.days or sum(r.sales) <= 0:
        return placeholder(path, title, f"no sales recorded for {r.sku}")
    fig, (ax_w, ax_m) = figure(9.0, 4.6, nrows=2, ncols=1)
    w, wv = S.complete_buckets(r.days, r.sales, "W")
    m, mv = S.complete_buckets(r.days, r.sales, "M")
    if not w:
        w, wv = S.bucket(r.days, r.sales, "W")
    ax_w.plot(w, wv, lw=1.2, color=COLORS["actual"], label="weekly total")
    if len(wv) >= 8:
        ma = [sum(wv[max(0, i - 7):i + 1]) / len(wv[max(0, i - 7):i + 1]) for i in range(len(wv))]
        ax_w.plot(w, ma, lw=2.0, color=COLORS["forecast"], label="8-week moving average")
    style(ax_w, f"{r.sku}: weekly sales", "", "units per week")
    legend(ax_w)
    if m:
        ax_m.bar(m, mv, width=24, color=COLORS["order"], alpha=0.85, label="monthly total")
        legend(ax_m)
    else:
        ax_m.text(0.5, 0.5, "less than one complete month of sales", ha="center", transform=ax_m.transAxes,
                  color=COLORS["muted"])
    style(ax_m, f"{r.sku}: monthly sales", "date", "units per month")
    for ax in (ax_w, ax_m):
        date_axis(ax)
        ax.set_ylim(bottom=0)
    return save(fig, path)


def forecast_backtest(path: Path, sku: str, fv: ForecastView | None, reason: str = "") -> Path:
    """History, each backtest fold's forecast with its interval, and the forecast ahead."""
    title = f"{sku}: forecast vs actual (backtest)"
    if fv is None or not fv.dates:
        return placeholder(path, title, reason or f"no forecast for {sku}")
    unit = UNIT.get(fv.freq, fv.freq)
    fig, ax = figure(9.0, 3.8)
    show_from = fv.windows[0].origin - dt.timedelta(days=_days(fv.freq) * 3 * max(1, len(fv.windows[0].dates))) \
        if fv.windows else fv.dates[0]
    hist = [(d, v) for d, v in zip(fv.dates, fv.history) if d >= show_from]
    ax.plot([d for d, _ in hist], [v for _, v in hist], color=COLORS["actual"], lw=1.5, marker="o", ms=2.5,
            label="actual")
    pct = f"{fv.level:.0%}"
    for i, w in enumerate(fv.windows):
        ax.fill_between(w.dates, w.lo, w.hi, color=COLORS["interval"], alpha=0.55, lw=0,
                        label=f"{pct} prediction interval" if i == 0 else None)
        ax.plot(w.dates, w.mean, color=COLORS["forecast"], lw=1.6, label="backtest forecast" if i == 0 else None)
        ax.axvline(w.origin, color=COLORS["muted"], lw=0.8, ls=":")
    if fv.future_dates:
        ax.fill_between(fv.future_dates, fv.future_lo, fv.future_hi, color=COLORS["interval"], alpha=0.35, lw=0)
        ax.plot(fv.future_dates, fv.future_mean, color=COLORS["forecast"], lw=1.6, ls="--", label="forecast ahead")
    metric_txt = ", ".join(f"{k} {v:.3g}" for k, v in fv.metrics.items() if v == v)
    style(ax, title + (f" — model {fv.model}" if fv.model else ""), "period start (dotted: backtest origins)",
          f"units per {unit}")
    if metric_txt:
        ax.text(0.99, 0.98, metric_txt, ha="right", va="top", fontsize=8, transform=ax.transAxes,
                color=COLORS["actual"], bbox={"facecolor": "white", "edgecolor": COLORS["grid"], "pad": 3})
    date_axis(ax)
    ax.set_ylim(bottom=0)
    legend_below(fig, ax)
    return save(fig, path)


def policy_plan(path: Path, sku: str, pv: PolicyView | None, fv: ForecastView | None, reason: str = "") -> Path:
    """Left: annual cost against order size, EOQ marked. Right: stock projected under the forecast,
    with the reorder point and the EOQ-sized orders it triggers."""
    title = f"{sku}: EOQ and reorder point"
    if pv is None or pv.eoq <= 0 or pv.demand_per_day <= 0:
        return placeholder(path, title, reason or f"no demand estimate for {sku}: EOQ is undefined")
    fig, (ax_c, ax_p) = figure(10.0, 4.2, nrows=1, ncols=2, width_ratios=[1, 1.6])
    annual = pv.demand_per_day * 365.0
    q_max = max(pv.eoq * 3.0, pv.lot_size * 1.3)
    qs = [pv.eoq * 0.2 + (q_max - pv.eoq * 0.2) * i / 119 for i in range(120)]
    ordering = [annual / q * pv.order_cost for q in qs]
    holding = [q / 2 * pv.holding_cost for q in qs]
    ax_c.plot(qs, [a + b for a, b in zip(ordering, holding)], color=COLORS["actual"], lw=2, label="total")
    ax_c.plot(qs, ordering, color=COLORS["order"], lw=1, ls="--", label="ordering")
    ax_c.plot(qs, holding, color=COLORS["stock"], lw=1, ls="--", label="holding")
    ax_c.axvline(pv.eoq, color=COLORS["forecast"], lw=1.5)
    ax_c.annotate(f"EOQ {pv.eoq:,.0f}", (pv.eoq, max(ordering[-1], holding[0])), xytext=(6, 30),
                  textcoords="offset points", fontsize=8, color=COLORS["forecast"])
    if pv.lot_model != "eoq" and pv.lot_size > 0 and abs(pv.lot_size - pv.eoq) > 0.5:
        ax_c.axvline(pv.lot_size, color=COLORS["order"], lw=1.3, ls="-.",
                     label=f"lot used ({pv.lot_model.upper().replace('_', ' ')}) {pv.lot_size:,.0f}")
    style(ax_c, "Annual cost vs order size (EOQ model)", "order quantity (units)", "cost per year")
    legend(ax_c, loc="upper right")
    ax_c.set_ylim(0, (ordering[-1] + holding[-1]) * 1.6)

    # Daily demand ahead: the forecast (spread evenly within each bucket), else the flat estimate.
    horizon_days, daily, basis = _daily_forecast(pv, fv)
    # The plan starts where the history ends (the first forecast period), so old data stays consistent.
    start = fv.future_dates[0] if fv is not None and fv.future_dates else dt.date.today()
    proj = simulate_sq(daily, reorder_point=pv.reorder_point, order_quantity=pv.lot_size,
                       lead_time_days=pv.lead_time_days, initial_on_hand=pv.on_hand)
    days = [start + dt.timedelta(days=i) for i in range(horizon_days)]
    ax_p.step(days, proj.on_hand, where="post", color=COLORS["stock"], lw=1.8, label="projected on hand")
    ax_p.axhline(pv.reorder_point, color=COLORS["rop"], ls="--", lw=1.3, label=f"reorder point {pv.reorder_point:,.0f}")
    ax_p.axhline(pv.safety_stock, color=COLORS["safety"], ls=":", lw=1.3, label=f"safety stock {pv.safety_stock:,.0f}")
    for i, t in enumerate(proj.order_days):
        ax_p.axvline(days[t], color=COLORS["order"], lw=0.8, alpha=0.6,
                     label=f"order of {pv.lot_size:,.0f}" if i == 0 else None)
    style(ax_p, f"Stock projected under {basis}", "date", "units on hand")
    ax_d = ax_p.twinx()  # the demand the projection consumes, on its own scale in the lower part
    ax_d.fill_between(days, daily, step="post", color=COLORS["forecast"], alpha=0.25, lw=0,
                      label="forecast demand / day (right axis)")
    ax_d.set_ylim(0, max(daily) * 3.5 if max(daily) > 0 else 1)
    ax_d.set_ylabel("forecast demand (units/day)", fontsize=8, color=COLORS["forecast"])
    ax_d.tick_params(labelsize=7, colors=COLORS["forecast"])
    ax_d.spines["top"].set_visible(False)
    ax_p.set_zorder(ax_d.get_zorder() + 1)
    ax_p.patch.set_visible(False)
    date_axis(ax_p)
    h1, l1 = ax_p.get_legend_handles_labels()
    h2, l2 = ax_d.get_legend_handles_labels()
    ax_p.legend(h1 + h2, l1 + l2, fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=3,
                frameon=False)
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    return save(fig, path)


def phased_plan(path: Path, sku: str, pv: PolicyView | None, reason: str = "") -> Path:
    """The time-phased plan: forecast demand per period (bars), reorder point and safety stock per
    period, projected stock, and the periods in which orders are placed, so a peak is seen coming."""
    title = f"{sku}: time-phased plan"
    if pv is None or not pv.horizon:
        return placeholder(path, title, reason or f"no forecast run for {sku}: the time-phased plan needs one "
                                                  "(`smartstock forecast --from-store`)")
    rows = pv.horizon
    starts = [dt.date.fromisoformat(r["start"]) for r in rows]
    width = max(1.0, (starts[1] - starts[0]).days * 0.7) if len(starts) > 1 else 5.0
    fig, ax = figure(9.0, 3.8)
    ax.bar(starts, [r["demand"] for r in rows], width=width, align="edge", color=COLORS["forecast"], alpha=0.25,
           label="forecast demand in the period")
    ax.step(starts, [r["reorder_point"] for r in rows], where="post", color=COLORS["rop"], ls="--", lw=1.4,
            label="reorder point (covers the next lead time)")
    ax.step(starts, [r["safety_stock"] for r in rows], where="post", color=COLORS["safety"], ls=":", lw=1.3,
            label="safety stock")
    ax.plot(starts, [r["projected_on_hand"] for r in rows], color=COLORS["stock"], lw=1.8, marker="o", ms=3,
            label="projected on hand (period start)")
    ordered = [(d, r) for d, r in zip(starts, rows) if r.get("order_total")]
    if ordered:
        ax.scatter([d for d, _ in ordered], [r["reorder_point"] for _, r in ordered], marker="v", s=50,
                   color=COLORS["order"], zorder=4, label="order placed in the period")
        for d, r in ordered:
            ax.annotate(f"{r['order_total']:,.0f}", (d, r["reorder_point"]), xytext=(0, 8), textcoords="offset points",
                        ha="center", fontsize=7.5, color=COLORS["order"])
    style(ax, f"{title} — demand from {pv.demand_basis or pv.demand_source}", "period start", "units")
    date_axis(ax)
    legend_below(fig, ax, ncols=3)
    return save(fig, path)


def simulation(path: Path, sku: str, sv: SimulationView | None, pv: PolicyView | None, reason: str = "") -> Path:
    """Stock on hand day by day when the (s,Q) policy is replayed against actual demand."""
    title = f"{sku}: simulated stock under (s, Q)"
    if sv is None or pv is None or not sv.days:
        return placeholder(path, title, reason or f"no sales history to replay for {sku}")
    res = sv.result
    fig, (ax, ax_d) = figure(9.0, 4.6, nrows=2, ncols=1, height_ratios=[3, 1], sharex=True)
    ax.step(sv.days, res.on_hand, where="post", color=COLORS["stock"], lw=1.5, label="on hand (end of day)")
    ax.axhline(pv.reorder_point, color=COLORS["rop"], ls="--", lw=1.2, label=f"s = reorder point {pv.reorder_point:,.0f}")
    ax.axhline(pv.safety_stock, color=COLORS["safety"], ls=":", lw=1.2, label=f"safety stock {pv.safety_stock:,.0f}")
    if res.arrival_days:
        ax.scatter([sv.days[t] for t in res.arrival_days], [res.on_hand[t] for t in res.arrival_days], marker="^",
                   s=22, color=COLORS["order"], zorder=3, label=f"order of Q = {pv.lot_size:,.0f} arrives")
    if res.short_days:
        ax.scatter([sv.days[t] for t in res.short_days], [0] * len(res.short_days), marker="x", s=26,
                   color=COLORS["short"], zorder=4, label=f"stock-out day ({len(res.short_days)})")
    style(ax, f"{title} — fill rate {res.fill_rate:.1%}, {res.stockout_events} stock-out(s)", "", "units on hand")
    legend(ax, fontsize=7.5, ncols=2)
    ax.set_ylim(bottom=min(0, min(res.on_hand)) - 1, top=max(res.on_hand) * 1.25 + 1)
    ax_d.bar(sv.days, sv.demand, width=1.0, color=COLORS["actual"], alpha=0.7)
    style(ax_d, "", "date", "demand / day")
    date_axis(ax_d)
    return save(fig, path)


def _daily_forecast(pv: PolicyView, fv: ForecastView | None, min_days: int = 90) -> tuple[int, list[float], str]:
    if fv is not None and fv.future_mean:
        per = _days(fv.freq)
        daily = [max(v, 0.0) / per for v in fv.future_mean for _ in range(per)]
        basis = "the forecast"
        if len(daily) < min_days:  # carry the last bucket's rate on so at least one cycle shows
            daily += [daily[-1]] * (min_days - len(daily))
            basis = "the forecast (last period carried on)"
        return len(daily), daily, basis
    return min_days, [pv.demand_per_day] * min_days, f"mean demand {pv.demand_per_day:,.1f}/day"


def _days(freq: str) -> int:
    return {"D": 1, "W": 7, "M": 30, "Q": 91}.get(freq, 7)
