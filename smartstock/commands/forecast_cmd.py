"""`smartstock forecast` (CSV -> CSV, or the device's sales cache -> store) and `smartstock backtest`."""

from __future__ import annotations

import argparse
import logging
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from smartstock.commands._common import add_store_options, load, print_json, print_table, store_from_args
from smartstock.config import ForecastConfig
from smartstock.errors import ConfigError

if TYPE_CHECKING:
    from smartstock.forecasting.io import SeriesTable

logger = logging.getLogger(__name__)

MODELS = ["auto", "lstm", "ets", "arima", "theta", "croston", "sba", "tsb", "seasonal-naive", "naive",
          "moving-average", "ensemble"]
BACKTEST_DEFAULT = "naive,seasonal-naive,moving-average,ets,theta,arima,ensemble,croston,sba,tsb"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--horizon", "-H", type=int, default=None, help="periods to forecast (default: config forecast.horizon)")
    p.add_argument("--freq", choices=["D", "W", "M", "Q"], default=None,
                   help="bucket size (default: inferred for unique_id,ds,y files; config forecast.freq for sales)")
    p.add_argument("--season-length", type=int, default=None, help="season in buckets (default: from freq: D 7, W 52, M 12, Q 4)")
    p.add_argument("--level", type=float, default=None, help="prediction interval coverage (default 0.9)")
    p.add_argument("--jobs", "-j", type=int, default=None, help="worker processes (default: number of CPUs)")
    p.add_argument("--windows", type=int, default=3, help="backtest origins per series")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("forecast", help="forecast demand per SKU from a sales CSV or the device's sales cache")
    p.add_argument("input", type=Path, nargs="?", help="CSV with sku,date,quantity or unique_id,ds,y")
    p.add_argument("--out", "-o", type=Path, help="output CSV (sku,date,forecast,lo,hi or unique_id,ds,...)")
    p.add_argument("--model", "-m", choices=MODELS, default=None, help="model (default: config forecast.model = auto)")
    p.add_argument("--lstm-model", type=Path, default=None, help="exported LSTM .onnx/.tflite (with manifest.json beside it)")
    p.add_argument("--from-store", action="store_true", help="forecast every SKU in the store's sales and save the runs")
    _common(p)
    add_store_options(p)
    p.set_defaults(func=_forecast)

    b = sub.add_parser("backtest", help="rolling-origin backtest: metrics per model over all series of a CSV")
    b.add_argument("input", type=Path, help="CSV with sku,date,quantity or unique_id,ds,y")
    b.add_argument("--models", default=BACKTEST_DEFAULT, help=f"comma-separated aliases (default {BACKTEST_DEFAULT}; add auto)")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common(b)
    add_store_options(b)
    b.set_defaults(func=_backtest)


def _single_threaded_blas() -> None:
    """Small statsmodels fits only lose time to BLAS threads; the process pool is the parallelism.
    Must run before numpy is imported to take effect."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _settings(args: argparse.Namespace):
    _single_threaded_blas()
    from smartstock.forecasting.runner import default_season_length

    cfg = load(args).forecast
    updates = {k: v for k, v in {"horizon": args.horizon, "freq": args.freq, "interval_level": args.level,
                                 "model": getattr(args, "model", None),
                                 "lstm_model": getattr(args, "lstm_model", None)}.items() if v is not None}
    if args.season_length is not None:
        updates["season_length"] = args.season_length
    from pydantic import ValidationError

    options = {"horizon": "--horizon", "freq": "--freq", "interval_level": "--level", "season_length": "--season-length",
               "model": "--model", "lstm_model": "--lstm-model"}
    cfg = cfg.model_copy()
    for k, v in updates.items():
        try:
            setattr(cfg, k, v)  # validate_assignment: the config file's bounds apply to options too
        except ValidationError as e:
            raise ConfigError(f"{options[k]} {v}: {e.errors()[0]['msg']}",
                              hint=ForecastConfig.model_fields[k].description) from None
    if args.windows < 1:
        raise ConfigError("--windows must be >= 1")
    if cfg.model == "lstm" and cfg.lstm_model is None:
        raise ConfigError("--model lstm needs --lstm-model FILE (an exported .onnx or .tflite)",
                          hint="train one with `smartstock train lstm` or use the shipped models/demand/")
    jobs = args.jobs or os.cpu_count() or 1
    return cfg, jobs, default_season_length


def _forecast(args: argparse.Namespace) -> int:
    cfg, jobs, default_season = _settings(args)
    if args.from_store:
        if args.input is not None:
            raise ConfigError("give either INPUT.csv or --from-store, not both")
        from smartstock.planning import forecast_store

        config = load(args)
        with store_from_args(args, config) as store:
            out = forecast_store(store, cfg, n_jobs=jobs)
        models = Counter(r.model for r, _, _ in out.values())
        print(f"forecast: {len(out)} SKU(s) from the store, {sum(1 for _, i, _ in out.values() if i)} run(s) saved; "
              f"models: {', '.join(f'{m} {n}' for m, n in models.most_common())}")
        return 0
    if args.input is None or args.out is None:
        raise ConfigError("forecast needs INPUT.csv and --out OUT.csv (or --from-store)",
                          hint="smartstock forecast sales.csv --horizon 8 --out forecast.csv")
    from smartstock.forecasting.io import read_series_csv, write_forecasts
    from smartstock.forecasting.runner import Job, forecast_many

    table = read_series_csv(args.input, args.freq or (cfg.freq if _is_sales(args.input) else None),
                            gap_periods=cfg.gap_periods)
    season = cfg.season_length or default_season(table.freq)
    series = list(table.series.values())
    todo = [Job(s.key, s.y, cfg.horizon, cfg.model, season, cfg.interval_level, cfg.lstm_model, args.windows,
                phase=s.start % season) for s in series]
    results = list(forecast_many(todo, n_jobs=jobs))
    for r in results:
        if r.note:
            logger.warning("%s: %s", r.key, r.note)
    rows = write_forecasts(args.out, table, ((s, r.forecast) for s, r in zip(series, results)))
    models = Counter(r.model for r in results if r.forecast is not None)
    print(f"forecast: {len(series)} series (freq {table.freq}, season {season}), {rows} rows -> {args.out}; "
          f"models: {', '.join(f'{m} {n}' for m, n in models.most_common())}")
    _say_gap(table)
    return 0


def _say_gap(table: SeriesTable) -> None:
    """A data gap in the file was left out (`forecast.gap_periods`): say which rows were used."""
    if table.window is not None:
        print(f"{'STALE SALES' if table.window.stale else 'data gap'}: {table.window.reason}")


def _is_sales(path: Path) -> bool:
    """True for sku,date,quantity files (bucketed with the config's freq), False for unique_id,ds,y."""
    from smartstock.ingest import open_sales_csv

    with open_sales_csv(path) as f:
        return f.naming == "sku"


def _backtest(args: argparse.Namespace) -> int:
    import numpy as np

    from smartstock.forecasting.base import available
    from smartstock.forecasting.io import read_series_csv
    from smartstock.forecasting.runner import BacktestJob, backtest_many

    cfg, jobs, default_season = _settings(args)
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in models if m not in available() or m == "lstm"]
    if unknown:
        raise ConfigError(f"unknown or unsupported model(s) for backtest: {', '.join(unknown)}",
                          hint=f"choose from {', '.join(m for m in available() if m != 'lstm')}")
    table = read_series_csv(args.input, args.freq or (cfg.freq if _is_sales(args.input) else None),
                            gap_periods=cfg.gap_periods)
    season = cfg.season_length or default_season(table.freq)
    todo = [BacktestJob(s.key, s.y, cfg.horizon, models, season, cfg.interval_level, args.windows)
            for s in table.series.values()]
    per_series = dict(backtest_many(todo, n_jobs=jobs))
    skipped = [k for k, v in per_series.items() if not v]
    rows = []
    for m in models:
        vals = [v[m] for v in per_series.values() if m in v]
        if not vals:
            continue
        row: dict = {"model": m, "series": len(vals)}
        for k in ("mase", "smape", "mae", "rmse", "mape", "bias", "coverage"):
            xs = [x[k] for x in vals if x[k] is not None and np.isfinite(x[k])]
            row[k] = float(np.mean(xs)) if xs else None
        rows.append(row)
    rows.sort(key=lambda r: (r["mase"] is None, r["mase"] or 0.0))
    if args.json:
        print_json({"horizon": cfg.horizon, "freq": table.freq, "season_length": season, "windows": args.windows,
                    "series": len(per_series), "skipped_too_short": skipped, "models": rows})
    else:
        print(f"backtest: {len(per_series)} series, horizon {cfg.horizon}, freq {table.freq}, season {season}, "
              f"{args.windows} window(s); means over series (coverage at level {cfg.interval_level})")
        print_table(rows, ["model", "series", "mase", "smape", "mae", "rmse", "mape", "bias", "coverage"], "{:.3f}")
        if skipped:
            print(f"{len(skipped)} series too short for one window of {cfg.horizon}: {', '.join(skipped[:10])}"
                  + (" ..." if len(skipped) > 10 else ""))
        _say_gap(table)
    return 0
