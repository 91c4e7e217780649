"""Inventory plans from forecasts: the link between demand forecasting and the stock policy.

Per SKU: daily sales from the store -> `forecast.freq` buckets -> forecast (model from the config,
`auto` by default) -> stored as a forecast run -> `DemandEstimate` whose mean is the forecast and
whose standard deviation comes from the measured backtest errors of the model used (not a guess)
-> `compute_policy` with the measured defect rate and stock on hand. Used by the edge service
(edge/refresh.py), `smartstock forecast --from-store` and `smartstock policy`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from statistics import NormalDist
from typing import Any

import numpy as np

from smartstock.config import Config, ForecastConfig
from smartstock.forecasting.io import DAYS_PER_BUCKET, bucket_daily, period_start
from smartstock.forecasting.runner import Job, SeriesResult, default_season_length, forecast_many
from smartstock.inventory.history import HistoryWindow
from smartstock.inventory.plan import plans_from_store, window_from_store
from smartstock.inventory.policy import DemandEstimate
from smartstock.store import Store
from smartstock.store.db import utcnow
from smartstock.store.sales import sales_series, skus_with_sales

logger = logging.getLogger(__name__)


def demand_estimate(res: SeriesResult, freq: str) -> DemandEstimate:
    """Per-day mean from the forecast; per-day std from the backtest errors (one-bucket RMSE / sqrt(days))."""
    days = DAYS_PER_BUCKET[freq]
    fc = res.forecast
    if fc is None:
        raise ValueError(f"{res.key}: no forecast to plan from")
    mean_day = max(0.0, float(np.mean(fc.mean))) / days
    if res.errors is not None and res.errors.size:
        sd_bucket = float(np.sqrt(np.mean(np.square(res.errors))))
        source = f"forecast:{res.model} (std from {res.errors.size} backtest errors)"
    else:  # too short to backtest: the model's own one-step interval
        sd_bucket = float((fc.hi[0] - fc.mean[0]) / NormalDist().inv_cdf(0.5 + fc.level / 2.0))
        source = f"forecast:{res.model} (std from model residuals, history too short to backtest)"
    return DemandEstimate(mean_day, max(0.0, sd_bucket) / math.sqrt(days), source)


def store_run(conn: Any, sku: str, res: SeriesResult, fc_cfg: ForecastConfig, season_length: int,
              dates: list[dt.date]) -> int:
    """Insert one forecast_runs row and its forecasts rows inside the caller's transaction."""
    if res.forecast is None:
        raise ValueError(f"{sku}: no forecast to store")
    demand = demand_estimate(res, fc_cfg.freq)
    meta = {"demand_class": res.demand_class, "n": res.n, "level": res.forecast.level, "backtest": res.metrics,
            "note": res.note, "demand": {"mean_per_day": demand.mean_per_day, "std_per_day": demand.std_per_day,
                                         "source": demand.source}}
    cur = conn.execute("INSERT INTO forecast_runs(sku, created_at, model, freq, horizon, season_length, metrics_json) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (sku, utcnow(), res.model, fc_cfg.freq, len(res.forecast.mean), season_length,
                        json.dumps(meta, default=_jsonable)))
    run_id = int(cur.lastrowid)
    conn.executemany("INSERT INTO forecasts(run_id, date, forecast, lo, hi) VALUES (?, ?, ?, ?, ?)",
                     [(run_id, d.isoformat(), float(m), float(lo), float(hi))
                      for d, m, lo, hi in zip(dates, res.forecast.mean, res.forecast.lo, res.forecast.hi)])
    return run_id


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return float(v) if isinstance(v, np.floating) else str(v)


def forecast_store(store: Store, fc_cfg: ForecastConfig, *, skus: list[str] | None = None, n_jobs: int = 1,
                   progress_every: int = 100, window: HistoryWindow | None = None
                   ) -> dict[str, tuple[SeriesResult, int | None, list[dt.date]]]:
    """Forecast every SKU of the sales cache (or `skus`) and store the runs. Returns sku -> (result, run id, dates).

    Only the sales inside `window` (default: the store's, see `smartstock.inventory.history`) are used:
    a data gap is left out instead of being read as weeks of zero demand.
    """
    season = fc_cfg.season_length or default_season_length(fc_cfg.freq)
    with store.read() as conn:
        window = window or window_from_store(conn, fc_cfg)
        names = skus if skus is not None else skus_with_sales(conn)
        daily = {s: sales_series(conn, s, start=window.start, end=window.end) for s in names}
    if window.end is None:
        return {}
    if window.stale:
        logger.warning("sales history: %s", window.reason)
    end = window.end
    jobs, starts = [], {}
    for sku, rows in daily.items():
        if not rows:
            continue
        start, y = bucket_daily(rows, fc_cfg.freq, end)
        if not len(y):
            continue
        starts[sku] = start + len(y)
        jobs.append(Job(sku, y, fc_cfg.horizon, fc_cfg.model, season, fc_cfg.interval_level, fc_cfg.lstm_model,
                        with_errors=True, phase=start % season))
    out: dict[str, tuple[SeriesResult, int | None, list[dt.date]]] = {}
    for res in forecast_many(jobs, n_jobs=n_jobs, progress_every=progress_every):
        dates = [period_start(starts[res.key] + k, fc_cfg.freq) for k in range(fc_cfg.horizon)]
        run_id = None
        if res.forecast is not None:
            with store.transaction() as conn:
                run_id = store_run(conn, res.key, res, fc_cfg, season, dates)
        out[res.key] = (res, run_id, dates)
    return out


def refresh_plans(store: Store, config: Config, *, today: dt.date | None = None) -> list[dict[str, Any]]:
    """Forecast and store every SKU's run, then plan every SKU the device knows with `plan_sku` (the one
    plan function: the CLI, report, status page and MQTT show the same figures). Errors land in `error`."""
    with store.read() as conn:
        window = window_from_store(conn, config.forecast, today)
    forecasts = forecast_store(store, config.forecast, window=window)
    with store.read() as conn:
        plans = plans_from_store(conn, config, today=today)
    for p in plans:
        res = forecasts.get(p["sku"], (None, None, []))[0]
        if res is not None and res.forecast is None and p.get("model") is None and res.note:
            p.setdefault("notes", []).append(f"forecast: {res.note}")
    logger.info("planned %d SKU(s) (%d forecast)", len(plans), len(forecasts))
    return plans
