"""Forecast many series: one function per series (picklable, pure) and a process pool around it.

Used by the CLI (`smartstock forecast`, `backtest`) and by `smartstock.planning` on the device.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smartstock.forecasting.auto import Auto
from smartstock.forecasting.backtest import MIN_TRAIN, backtest, origins
from smartstock.forecasting.base import REGISTRY, Forecast, make_forecaster
from smartstock.forecasting.demand import classify
from smartstock.logs import Progress

logger = logging.getLogger(__name__)

SEASON_BY_FREQ = {"D": 7, "W": 52, "M": 12, "Q": 4}


def default_season_length(freq: str) -> int:
    """Season length in buckets when the user gave none (weekly demand: yearly season)."""
    return SEASON_BY_FREQ.get(freq, 1)


@dataclass
class SeriesResult:
    """Forecast of one series and how it was made; `forecast` is None when the history was empty."""

    key: str
    forecast: Forecast | None
    model: str
    demand_class: str
    n: int
    errors: np.ndarray | None = None  # backtest errors (windows x h) of the model used
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class Job:
    """Everything a worker needs for one series (picklable)."""

    key: str
    y: np.ndarray
    h: int
    model: str = "auto"
    season_length: int = 1
    level: float = 0.9
    lstm_model: Path | None = None
    windows: int = 3
    with_errors: bool = False
    phase: int = 0  # season position of y[0] (LSTM calendar features)


def _build(job: Job) -> Any:
    cls = REGISTRY.get(job.model)
    opts = cls.job_options(job) if cls is not None else {}  # an unknown name: make_forecaster says which exist
    return make_forecaster(job.model, season_length=job.season_length, **opts)


def forecast_one(job: Job) -> SeriesResult:
    """Fit and forecast one series; negative-free histories get negative-free forecasts."""
    y = np.asarray(job.y, float)
    n = len(y)
    if n == 0:
        return SeriesResult(job.key, None, "none", "empty", 0, note="no history: nothing to forecast")
    note = None
    model = job.model
    if model not in ("naive", "auto") and n < 2:
        note, model = f"{n} point(s) of history: naive used instead of {model}", "naive"
    fc_model = _build(Job(**{**job.__dict__, "model": model}))
    fc = fc_model.fit(y).predict(job.h, job.level)
    if np.min(y) >= 0:
        fc = fc.clipped(0.0)
    res = SeriesResult(job.key, fc, model, classify(y), n, note=note)
    if isinstance(fc_model, Auto):
        res.model = fc_model.chosen
        res.errors = fc_model.errors()
        if fc_model.backtest is not None:
            res.metrics = fc_model.backtest.metrics
    if job.with_errors and res.errors is None:
        min_train = MIN_TRAIN
        h = min(job.h, max(1, n - min_train))
        if origins(n, h, job.windows, None, min_train) and model != "lstm":
            bt = backtest(y, [res.model], h=h, season_length=job.season_length, windows=job.windows,
                          min_train=min_train)
            res.errors = bt.errors.get(res.model)
            res.metrics = bt.metrics
    return res


def _init_worker() -> None:
    # one BLAS thread per process: the pool itself is the parallelism
    os.environ["OMP_NUM_THREADS"] = "1"


def forecast_many(jobs: Iterable[Job], *, n_jobs: int = 1, progress_every: int = 100) -> Iterator[SeriesResult]:
    """Results in input order; progress on a terminal, logged every `progress_every` series (0: silent)."""
    yield from _run_many(forecast_one, list(jobs), n_jobs, "forecast: series", progress_every, chunk_max=16)


def _run_many(fn: Any, jobs: list[Any], n_jobs: int, label: str, progress_every: int, *,
              chunk_max: int) -> Iterator[Any]:
    """`fn` over `jobs` in input order, in `n_jobs` processes when that is worth it (`smartstock.logs.Progress`)."""
    progress = Progress(label, len(jobs), log_every=progress_every)
    if n_jobs <= 1 or len(jobs) < 2:
        for i, job in enumerate(jobs, 1):
            yield fn(job)
            progress(i)
        return
    ctx = mp.get_context("spawn" if os.name == "nt" else "fork")
    with ctx.Pool(n_jobs, initializer=_init_worker) as pool:
        chunk = max(1, min(chunk_max, len(jobs) // (n_jobs * 8) or 1))
        for i, res in enumerate(pool.imap(fn, jobs, chunksize=chunk), 1):
            yield res
            progress(i)


@dataclass(frozen=True)
class BacktestJob:
    key: str
    y: np.ndarray
    h: int
    models: tuple[str, ...]
    season_length: int = 1
    level: float = 0.9
    windows: int = 3


def backtest_one(job: BacktestJob) -> tuple[str, dict[str, dict[str, float]]]:
    """Per model metrics of one series (empty when too short for a single window)."""
    y = np.asarray(job.y, float)
    min_train = MIN_TRAIN
    if not origins(len(y), job.h, job.windows, None, min_train):
        return job.key, {}
    return job.key, backtest(y, list(job.models), h=job.h, season_length=job.season_length, windows=job.windows,
                             level=job.level, min_train=min_train).metrics


def backtest_many(jobs: Iterable[BacktestJob], *, n_jobs: int = 1, progress_every: int = 100
                  ) -> Iterator[tuple[str, dict[str, dict[str, float]]]]:
    yield from _run_many(backtest_one, list(jobs), n_jobs, "backtest: series", progress_every, chunk_max=8)