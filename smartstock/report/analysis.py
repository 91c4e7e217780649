"""Per-SKU analysis behind the charts: rolling-origin backtest, forecast, policy and (s,Q) replay.

The forecasting models and the policy maths are the library's own (`smartstock.forecasting`,
`smartstock.inventory.policy`), so the report shows what the device computes, not a re-derivation.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from typing import Any

import numpy as np

from smartstock.config import Config
from smartstock.errors import SmartStockError
from smartstock.report import series as S
from smartstock.report.model import BacktestWindow, ForecastView, PolicyView, SimulationView, SkuReport
from smartstock.report.simulate import simulate_sq

logger = logging.getLogger(__name__)

SEASON = {"D": 7, "W": 52, "M": 12, "Q": 4}
BUCKET_DAYS = {"D": 1, "W": 7, "M": 365.25 / 12, "Q": 365.25 / 4}
FOLDS = 3
SIM_MIN_DAYS = 180


def analyse_sku(r: SkuReport, config: Config, *, on_hand: float | None, defect_rate: float,
                policy_overrides: dict | None = None, model_hint: str | None = None,
                forecast: bool = True, plan: dict[str, Any] | None = None) -> SkuReport:
    """Fill r.forecast, r.policy and r.simulation; each failure is recorded in r.problems, not raised.

    `model_hint` is the model the device last chose for this SKU (its latest forecast run); with
    model `auto` it saves re-running the selection. `forecast=False` (SKUs outside the charted top N)
    skips the backtest: the policy then uses the sales-history demand, which keeps a report over
    thousands of SKUs quick.
    """
    if forecast:
        try:
            r.forecast = backtest_and_forecast(r.days, r.sales, config, model_hint=model_hint)
        except (SmartStockError, ValueError, ArithmeticError, ImportError) as e:
            r.problems.append(f"forecast: {e}")
            logger.info("%s: no forecast for the report: %s", r.sku, e)
    try:
        if plan is not None:  # a store: the device's own plan (plan_sku), as `smartstock policy` shows it
            if plan.get("error"):
                raise ValueError(plan["error"])
            r.policy = view_from_plan(plan, on_hand_known=on_hand is not None)
        else:
            r.policy = policy_view(r, config, on_hand=on_hand, defect_rate=defect_rate, overrides=policy_overrides)
    except (SmartStockError, ValueError, ArithmeticError, ImportError) as e:
        r.problems.append(f"policy: {e}")
        logger.info("%s: no policy for the report: %s", r.sku, e)
    if r.policy is not None and r.policy.lot_size > 0 and r.days:
        n = min(len(r.days), max(SIM_MIN_DAYS, _backtest_days(r.forecast)))
        pv = r.policy
        res = simulate_sq(r.sales[-n:], reorder_point=pv.reorder_point, order_quantity=pv.lot_size,
                          lead_time_days=pv.lead_time_days, holding_cost=pv.holding_cost, order_cost=pv.order_cost,
                          unit_cost=pv.unit_cost, days_per_year=config.inventory.days_per_year)
        r.simulation = SimulationView(
            r.days[-n:], r.sales[-n:], res,
            policy_basis=f"today's policy replayed on the last {n} days of actual demand, starting with "
                         f"s + Q = {pv.reorder_point + pv.lot_size:,.0f} units (in-sample: the demand "
                         f"estimate ({pv.demand_source}) includes these days)")
    return r


def backtest_and_forecast(days: list[dt.date], sales: list[float], config: Config, *,
                          model_hint: str | None = None) -> ForecastView:
    """Bucket the daily sales to config.forecast.freq, run FOLDS rolling-origin folds and a final forecast.

    With model `auto` the selection runs once on the whole history (as on the device); the folds then
    show the chosen model, so the chart answers "how good is the model we use".
    """
    from smartstock.forecasting.base import available, make_forecaster

    freq = config.forecast.freq if config.forecast.freq in ("D", "W", "M") else "M"
    dates, y = S.complete_buckets(days, sales, freq)
    if len(y) < 6:
        raise ValueError(f"only {len(y)} complete {freq} periods of sales; at least 6 are needed")
    m = config.forecast.season_length or SEASON[freq]
    alias = _model_alias(config.forecast.model, available())
    level = config.forecast.interval_level
    h = max(1, min(config.forecast.horizon, len(y) // (FOLDS + 2)))
    yv = np.asarray(y, dtype=float)
    season = m if len(y) >= 2 * m + h * FOLDS else 1
    label = alias
    hint = _hinted_alias(model_hint, available())
    if alias == "auto" and hint:
        alias, label = hint, f"auto: {hint} (device's choice)"
    elif alias == "auto":
        alias = make_forecaster("auto", season_length=season, horizon=h).fit(yv).chosen
        label = f"auto: {alias}"
    # The LSTM needs its exported file; every other model builds from its alias alone.
    opts = {"model_path": config.forecast.lstm_model} if alias == "lstm" else {}
    windows: list[BacktestWindow] = []
    for k in range(FOLDS, 0, -1):
        origin = len(y) - k * h
        fc = make_forecaster(alias, season_length=season, **opts).forecast(yv[:origin], h, level).clipped()
        windows.append(BacktestWindow(dates[origin], dates[origin:origin + h], y[origin:origin + h],
                                      fc.mean.tolist(), fc.lo.tolist(), fc.hi.tolist()))
    final = make_forecaster(alias, season_length=season, **opts).forecast(yv, h, level).clipped()
    step = dates[-1] - dates[-2]
    future = [_next_bucket(dates[-1], freq, i + 1, step) for i in range(h)]
    return ForecastView(model=label, freq=freq, level=level, dates=dates, history=y, windows=windows,
                        future_dates=future, future_mean=final.mean.tolist(), future_lo=final.lo.tolist(),
                        future_hi=final.hi.tolist(), metrics=backtest_metrics(windows, yv, season),
                        source="smartstock.forecasting")


def backtest_metrics(windows: list[BacktestWindow], y: np.ndarray, season: int) -> dict[str, float]:
    """MASE, sMAPE (%), MAE and interval coverage averaged over the folds (the library's metric code)."""
    from smartstock.forecasting import metrics

    n = len(y)
    scores = []
    for i, w in enumerate(windows):  # the folds tile the end of the history
        origin = n - sum(len(x.dates) for x in windows[i:])
        scores.append(metrics.evaluate(np.asarray(w.actual), np.asarray(w.mean), np.asarray(w.lo), np.asarray(w.hi),
                                       y[:origin], season))
    out = {}
    for key, name in (("mase", "MASE"), ("smape", "sMAPE%"), ("mae", "MAE"), ("coverage", "coverage")):
        vals = [s[key] for s in scores if math.isfinite(s[key])]
        out[name] = float(np.mean(vals)) if vals else float("nan")
    return out


def policy_view(r: SkuReport, config: Config, *, on_hand: float | None, defect_rate: float,
                overrides: dict | None = None) -> PolicyView:
    """compute_policy with the forecast's demand (std from the backtest errors), else the sales history."""
    from smartstock.config import SkuPolicy
    from smartstock.inventory.phased import phased_plan
    from smartstock.inventory.plan import demand_sample
    from smartstock.inventory.policy import DemandEstimate, compute_policy, demand_from_sales

    base = config.inventory.policy_for(r.sku)
    freq = r.forecast.freq if r.forecast is not None else config.forecast.freq
    sample = demand_sample(list(zip(r.days, r.sales)), freq, r.days[-1] if r.days else None)
    sku_policy = SkuPolicy(**{**base.model_dump(), **(overrides or {})})
    horizon: list[dict[str, Any]] = []
    if r.forecast is not None and r.forecast.future_mean:
        fv = r.forecast
        per = BUCKET_DAYS[fv.freq]
        errors = np.array([a - m for w in fv.windows for a, m in zip(w.actual, w.mean)])
        std_bucket = float(np.sqrt(np.mean(errors ** 2))) if len(errors) else 0.0
        basis = f"forecast:{_short(fv.model)}"
        demand = DemandEstimate(float(np.mean(fv.future_mean)) / per, std_bucket / math.sqrt(per), basis, sample)
        horizon = phased_plan(sku_policy, fv.future_dates, fv.future_mean, [per] * len(fv.future_mean),
                              demand.std_per_day, on_hand=on_hand or 0.0, defect_rate=defect_rate,
                              days_per_year=config.inventory.days_per_year, basis=basis, sample=sample)
    elif r.days:
        demand = dataclasses.replace(demand_from_sales(zip(r.days, r.sales), window_days=365), sample=sample)
        basis = f"history:{demand.source.split(':')[-1].rstrip('d')} days"
    elif sku_policy.annual_demand:
        demand = DemandEstimate(sku_policy.annual_demand / config.inventory.days_per_year, 0.0, "config:annual_demand")
        basis = "config:annual_demand"
    else:
        raise ValueError("no sales and no annual_demand configured")
    res = compute_policy(sku_policy, demand, defect_rate=defect_rate, on_hand=on_hand or 0.0,
                         days_per_year=config.inventory.days_per_year)
    known = on_hand is not None
    return PolicyView(
        eoq=res.eoq, lot_size=res.lot_size, start_quantity=res.order_quantity, safety_stock=res.safety_stock,
        reorder_point=res.reorder_point, demand_per_day=res.demand_per_day, demand_std_per_day=res.demand_std_per_day,
        demand_source=res.demand_source, order_cost=sku_policy.order_cost, holding_cost=sku_policy.holding_cost,
        unit_cost=sku_policy.unit_cost, lead_time_days=sku_policy.lead_time_days,
        service_level=sku_policy.service_level, service_type=sku_policy.service_type,
        on_hand=on_hand if known else res.reorder_point + res.lot_size, on_hand_known=known,
        defect_rate=res.defect_rate, annual_cost=res.annual_cost, lot_model=res.lot_model, notes=list(res.notes),
        demand_basis=basis, horizon=horizon)


def view_from_plan(plan: dict[str, Any], *, on_hand_known: bool) -> PolicyView:
    """The report's view of a `smartstock.inventory.plan.plan_sku` dict: the same figures, no recomputing."""
    on_hand = float(plan["on_hand"]) if on_hand_known else float(plan["reorder_point"]) + float(plan["lot_size"])
    return PolicyView(
        eoq=plan["eoq"], lot_size=plan["lot_size"], start_quantity=plan["order_quantity"],
        safety_stock=plan["safety_stock"], reorder_point=plan["reorder_point"], demand_per_day=plan["demand_per_day"],
        demand_std_per_day=plan["demand_std_per_day"], demand_source=plan["demand_source"],
        order_cost=plan["order_cost"], holding_cost=plan["holding_cost"], unit_cost=plan["unit_cost"],
        lead_time_days=plan["lead_time_days"], service_level=plan["service_level"],
        service_type=plan["service_type"], on_hand=on_hand, on_hand_known=on_hand_known,
        defect_rate=plan["defect_rate"], annual_cost=plan["annual_cost"], lot_model=plan["lot_model"],
        notes=[n for n in plan.get("notes", []) if not n.startswith("stale sales:")],
        demand_basis=plan["demand_basis"] or "", stale=bool(plan.get("stale")),
        stale_reason=plan.get("stale_reason") or "", horizon=list(plan.get("horizon") or []),
        as_of=plan.get("as_of") or "")


def _short(label: str) -> str:
    """`auto: ets (device's choice)` -> `ets`."""
    return label.split(":")[-1].split("(")[0].strip() or label


def _model_alias(wanted: str, registered: list[str]) -> str:
    if wanted in registered:
        return wanted
    for fallback in ("auto", "ensemble", "ets", "theta", "seasonal-naive", "naive"):
        if fallback in registered:
            logger.info("forecast model %r not available to the report; using %r", wanted, fallback)
            return fallback
    raise ValueError(f"no forecasting model registered (wanted {wanted!r})")


def _hinted_alias(hint: str | None, registered: list[str]) -> str | None:
    """`ets`, `auto:ets` or `auto->ets` -> `ets` when that model is registered (and is not auto)."""
    if not hint:
        return None
    for sep in ("->", ":", "/", "("):
        hint = hint.split(sep)[-1] if sep != "(" else hint.split(sep)[0]
    hint = hint.strip(" )")
    return hint if hint in registered and hint != "auto" else None


def _next_bucket(last: dt.date, freq: str, i: int, step: dt.timedelta) -> dt.date:
    if freq == "M":
        y, m = divmod(last.month - 1 + i, 12)
        return dt.date(last.year + y, m + 1, 1)
    return last + i * step


def _backtest_days(fv: ForecastView | None) -> int:
    if fv is None or not fv.windows:
        return 0
    return (fv.dates[-1] - fv.windows[0].origin).days + int(BUCKET_DAYS[fv.freq])
