"""Forecast accuracy and speed of `auto`, side by side with statsforecast (Nixtla) in one run.

Sets (real data from ../shared/data where present, generated ones with fixed seeds):
  m3q       M3 quarterly, 756 series, last 8 held out, season 4
  m4w       M4 weekly, 359 series, last 13 held out, season 52 (MASE scaled lag 1, as in M4)
  m4w156    the same cut to the last 156 + 13 weeks: a yearly season seen under three times
  wineind   pmdarima's monthly wine sales, 4 rolling origins x 12 months, season 12
  daily     60 generated SKUs, 2 years of daily sales, Sunday closed, 28 days held out, season 7
  dailyy    40 generated SKUs, 3 years of daily sales, weekly and yearly pattern, 28 days held out, season 7
            (peers include MSTL with a weekly and a yearly season)
  dailyyc   40 generated SKUs, 2 years of daily sales, weekly and yearly pattern, one weekday closed, 28 days
            held out, season 7 (seed 23; never used to choose a model)
  spares    400 generated spare parts, 104 + 13 weeks, about 76 % zero weeks
Per set: MASE, RMSSE, sMAPE (where no actual is 0), bias (mean forecast - actual over the mean
training level: > 0 forecasts too high), coverage of the 80 % and 95 % intervals and wall ms per
series, for `auto` and statsforecast's AutoETS, DynamicOptimizedTheta, AutoARIMA, MSTL (seasonal
sets) and CrostonSBA/ADIDA (spares), each with the same number of processes. On spares two reference
rows: the zero forecast and the generator's true expected demand per week (MASE rewards forecasting
below the mean on mostly-zero weeks: the perfect level scores worse than biased-low forecasts).
AutoARIMA with season 52 takes about 26 s per series here, so on the weekly sets it runs on a
sample of the 156-week cut and of the daily set (SMARTSTOCK_BENCH_ARIMA_SAMPLE, default 10; about 9 s
per daily series), scored beside `auto` on the same sample, and is left out on the full weekly histories (6 series did not finish in 10 minutes).
Also: the engine's cold start (import + first fit in a fresh process) and LSTM batch inference.

`python -m benchmarks forecast`; SMARTSTOCK_BENCH_SERIES=N scores N series per set (quick),
SMARTSTOCK_BENCH_SETS=m3q,daily picks sets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

from benchmarks._common import ROOT, shared_data, time_per_call  # noqa: E402
from smartstock.forecasting import metrics  # noqa: E402

JOBS = int(os.environ.get("SMARTSTOCK_BENCH_JOBS", "2"))
LIMIT = int(os.environ.get("SMARTSTOCK_BENCH_SERIES", "0"))
ARIMA_SAMPLE = int(os.environ.get("SMARTSTOCK_BENCH_ARIMA_SAMPLE", "10"))
SETS = os.environ.get("SMARTSTOCK_BENCH_SETS", "m3q,m4w,m4w156,wineind,daily,dailyy,dailyyc,spares").split(",")
LEVELS = (80, 95)


@dataclass
class Set:
    name: str
    title: str
    train: list[np.ndarray]
    test: list[np.ndarray]
    h: int
    m: int  # season length given to the models
    scale_m: int  # lag of the MASE scale
    peers: dict[str, object] = field(default_factory=dict)  # name -> statsforecast model
    sampled: tuple[str, ...] = ()  # peers run on a sample only
    smape: bool = True
    truth: list[np.ndarray] | None = None  # generated sets: the expected demand of each held-out period


def _subset(ys: list[np.ndarray]) -> list[np.ndarray]:
    if not LIMIT or LIMIT >= len(ys):
        return ys
    return [ys[i] for i in sorted(np.random.default_rng(0).permutation(len(ys))[:LIMIT])]


def _held_out(name: str, title: str, ys: list[np.ndarray], h: int, m: int, scale_m: int,
              rates: list[np.ndarray] | None = None, **kw) -> Set:
    ys = _subset(ys)
    truth = [r[-h:] for r in _subset(rates)] if rates is not None else None
    return Set(name, title.format(n=len(ys)), [y[:-h] for y in ys], [y[-h:] for y in ys], h, m, scale_m,
               truth=truth, **kw)


def _csv_series(file: str) -> list[np.ndarray] | None:
    path = shared_data(file)
    if path is None:
        return None
    import pandas as pd

    df = pd.read_csv(path)
    return [g["y"].to_numpy(float) for _, g in df.groupby("unique_id", sort=True)]


def daily_closed_sunday(n_skus: int = 60, days: int = 730 + 28, seed: int = 11) -> list[np.ndarray]:
    """Daily sales with a weekday pattern, a drifting level, and the shop closed on Sundays."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_skus):
        weekday = np.r_[rng.uniform(0.7, 1.0, 4), rng.uniform(1.1, 1.6, 2), 0.0]  # Mon..Sat, Sun closed
        level = rng.uniform(3, 60) * np.exp(np.cumsum(rng.normal(0, 0.01, days)) + rng.normal(0, 0.15) * np.arange(days) / days)
        out.append(rng.poisson(level * weekday[np.arange(days) % 7]).astype(float))
    return out


def daily_weekly_yearly(n_skus: int = 40, days: int = 3 * 365 + 28, seed: int = 17,
                        closed: bool = False) -> list[np.ndarray]:
    """Daily sales: a weekday pattern, a yearly wave of 20-60 %, a drifting level; open every day, or with
    one weekday (a different one per SKU) closed."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    out = []
    for _ in range(n_skus):
        weekday = np.r_[rng.uniform(0.7, 1.0, 4), rng.uniform(1.1, 1.6, 2), rng.uniform(0.4, 1.0)]
        weekday[-1] *= not closed
        weekday = np.roll(weekday, rng.integers(7))
        year = 1 + rng.uniform(0.2, 0.6) * np.sin(2 * np.pi * (t + rng.integers(365)) / 365.25)
        level = rng.uniform(3, 60) * np.exp(np.cumsum(rng.normal(0, 0.005, days))) * year
        out.append(rng.poisson(level * weekday[t % 7]).astype(float))
    return out


def spare_parts(n_parts: int = 400, weeks: int = 104 + 13, seed: int = 13) -> list[np.ndarray]:
    """Intermittent weekly demand: a slowly drifting chance of an order, negative-binomial sizes."""
    return spare_parts_with_rates(n_parts, weeks, seed)[0]


def spare_parts_with_rates(n_parts: int = 400, weeks: int = 104 + 13,
                           seed: int = 13) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`spare_parts` and each week's expected demand (chance of an order x mean size 1 + u)."""
    rng = np.random.default_rng(seed)
    out, rates = [], []
    for _ in range(n_parts):
        p = np.clip(rng.uniform(0.12, 0.36) * np.exp(np.cumsum(rng.normal(0, 0.03, weeks))), 0, 0.9)
        u = rng.uniform(1, 8)
        size = 1 + rng.negative_binomial(2, 2 / (2 + u), weeks)  # mean 1 + u
        out.append(((rng.random(weeks) < p) * size).astype(float))
        rates.append(p * (1.0 + u))
    return out, rates


def _sets() -> list[Set]:
    from statsforecast.models import ADIDA, MSTL, AutoARIMA, AutoETS, CrostonSBA, DynamicOptimizedTheta
    from statsforecast.utils import ConformalIntervals

    def core(m: int) -> dict[str, object]:
        return {"AutoETS": AutoETS(season_length=m), "Theta": DynamicOptimizedTheta(season_length=m),
                "AutoARIMA": AutoARIMA(season_length=m)}

    sets = []
    if "m3q" in SETS and (ys := _csv_series("m3_quarterly.csv")) is not None:
        sets.append(_held_out("m3q", "M3 quarterly: {n} series, 8 quarters held out", ys, 8, 4, 4, peers=core(4)))
    weekly = _csv_series("m4_weekly.csv") if {"m4w", "m4w156"} & set(SETS) else None
    if weekly is not None:
        peers = {**core(52), "MSTL": MSTL(season_length=52)}
        if "m4w" in SETS:  # AutoARIMA(52) on full weekly histories did not finish 6 series in 10 minutes here
            print("m4w: AutoARIMA left out (season 52 on ~950-week histories: 6 series not done in 10 minutes)")
            sets.append(_held_out("m4w", "M4 weekly, full history: {n} series, 13 weeks held out", weekly, 13, 52, 1,
                                  peers={k: v for k, v in peers.items() if k != "AutoARIMA"}))
        if "m4w156" in SETS:
            sets.append(_held_out("m4w156", "M4 weekly, last 156 weeks: {n} series, 13 weeks held out",
                                  [y[-169:] for y in weekly], 13, 52, 1, peers=dict(peers), sampled=("AutoARIMA",)))
    if "wineind" in SETS:
        from pmdarima.datasets import load_wineind

        y = np.asarray(load_wineind(), float)
        starts = [len(y) - 12 * k for k in range(4, 0, -1)]
        sets.append(Set("wineind", f"wineind (monthly, {len(y)} points): 4 rolling origins x 12 months",
                        [y[:o] for o in starts], [y[o:o + 12] for o in starts], 12, 12, 12,
                        peers={**core(12), "MSTL": MSTL(season_length=12)}))
    if "daily" in SETS:
        sets.append(_held_out("daily", "daily, Sunday closed (generated, seed 11): {n} SKUs, 28 days held out",
                              daily_closed_sunday(), 28, 7, 7, peers={**core(7), "MSTL": MSTL(season_length=7)},
                              sampled=("AutoARIMA",), smape=False))  # AutoARIMA(7): about 9 s per 2-year series
    if "dailyy" in SETS:
        sets.append(_held_out("dailyy", "daily, weekly + yearly pattern (generated, seed 17): {n} SKUs, 28 days held out",
                              daily_weekly_yearly(), 28, 7, 7, sampled=("AutoARIMA",), smape=False,
                              peers={**core(7), "MSTL": MSTL(season_length=7),
                                     "MSTL(7, 365)": MSTL(season_length=[7, 365])}))
    if "dailyyc" in SETS:
        sets.append(_held_out("dailyyc", "daily, weekly + yearly pattern, a weekday closed (generated, seed 23): {n} SKUs, "
                              "28 days held out", daily_weekly_yearly(days=2 * 365 + 28, seed=23, closed=True), 28, 7, 7,
                              sampled=("AutoARIMA",), smape=False, peers={**core(7), "MSTL": MSTL(season_length=7)}))
    if "spares" in SETS:
        parts, rates = spare_parts_with_rates()
        sets.append(_held_out("spares", "spare parts, intermittent (generated, seed 13): {n} parts, 13 weeks held out",
                              parts, 13, 1, 1, rates=rates, smape=False,
                              peers={**core(1), "CrostonSBA": CrostonSBA(prediction_intervals=ConformalIntervals(3, 13)),
                                     "ADIDA": ADIDA(prediction_intervals=ConformalIntervals(3, 13))}))
    return sets


def _auto_one(args: tuple[np.ndarray, int, int]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Fit `auto` once, forecast at each level (what a worker does per SKU)."""
    from smartstock.forecasting.base import make_forecaster

    y, h, m = args
    model = make_forecaster("auto", season_length=m, horizon=h).fit(y)
    out = []
    for lv in LEVELS:
        fc = model.predict(h, lv / 100)
        out.append((fc.mean, fc.lo, fc.hi))
    return out


def _ours(s: Set) -> tuple[list[dict[int, tuple]], float]:
    import multiprocessing as mp

    _auto_one((s.train[0], s.h, s.m))  # the parent imports the engine once; forked workers inherit it
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(JOBS) as pool:
        res = pool.map(_auto_one, [(y, s.h, s.m) for y in s.train], chunksize=max(1, min(16, len(s.train) // (JOBS * 8) or 1)))
    secs = time.perf_counter() - t0
    return [dict(zip(LEVELS, r)) for r in res], secs


def _peer(s: Set, model: object, idx: list[int]) -> tuple[list[dict[int, tuple]], float]:
    import pandas as pd
    from statsforecast import StatsForecast

    series = [s.train[i] for i in idx]
    df = pd.DataFrame({"unique_id": np.repeat(np.arange(len(series)), [len(y) for y in series]),
                       "ds": np.concatenate([np.arange(len(y)) for y in series]), "y": np.concatenate(series)})
    name = repr(model)
    StatsForecast(models=[model], freq=1, n_jobs=1).forecast(df=df[df.unique_id < 1], h=s.h)  # warm up
    t0 = time.perf_counter()
    out = StatsForecast(models=[model], freq=1, n_jobs=JOBS).forecast(df=df, h=s.h, level=list(LEVELS))
    secs = time.perf_counter() - t0
    ids = out["unique_id"].to_numpy()
    res = []
    for i in range(len(series)):
        sel = ids == i
        res.append({lv: (out[name].to_numpy()[sel], out[f"{name}-lo-{lv}"].to_numpy()[sel],
                         out[f"{name}-hi-{lv}"].to_numpy()[sel]) for lv in LEVELS})
    return res, secs


def _score(s: Set, fcs: list[dict[int, tuple]], idx: list[int], secs: float) -> dict[str, float]:
    tr, te = [s.train[i] for i in idx], [s.test[i] for i in idx]
    row = {"mase": float(np.nanmean([metrics.mase(a, f[80][0], t, s.scale_m) for a, f, t in zip(te, fcs, tr)])),
           "rmsse": float(np.nanmean([metrics.rmsse(a, f[80][0], t) for a, f, t in zip(te, fcs, tr)])),
           "smape": float(np.mean([metrics.smape(a, f[80][0]) for a, f in zip(te, fcs)])) if s.smape else float("nan"),
           "bias": float(np.mean([metrics.bias(a, f[80][0]) / max(np.mean(np.abs(t)), 1e-9) for a, f, t in zip(te, fcs, tr)])),
           "series": len(idx), "ms_per_series": 1000.0 * secs / len(idx)}
    for lv in LEVELS:
        row[f"cover{lv}"] = float(np.mean([metrics.coverage(a, f[lv][1], f[lv][2]) for a, f in zip(te, fcs)]))
    return row


def _print(s: Set, rows: dict[str, dict[str, float]]) -> None:
    print(f"{s.title}, {JOBS} processes")
    print(f"  {'model':33s} {'MASE':>7s} {'RMSSE':>7s} {'sMAPE%':>7s} {'bias':>6s} {'cov80':>6s} {'cov95':>6s} "
          f"{'ms/series':>10s}")
    for name, r in sorted(rows.items(), key=lambda kv: (kv[1]["series"] != len(s.train), kv[1]["mase"])):
        sm = "      -" if not np.isfinite(r["smape"]) else f"{r['smape']:7.2f}"
        print(f"  {name:33s} {r['mase']:7.3f} {r['rmsse']:7.3f} {sm} {r['bias']:+6.3f} {r['cover80']:6.3f} "
              f"{r['cover95']:6.3f} {r['ms_per_series']:10.1f}")


def run_set(s: Set) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        everyone = list(range(len(s.train)))
        ours, t_ours = _ours(s)
        rows = {"auto": _score(s, ours, everyone, t_ours)}
        sample = everyone
        for name, model in s.peers.items():
            idx = everyone
            label = name
            if name in s.sampled and ARIMA_SAMPLE < len(everyone):
                idx = sample = sorted(np.random.default_rng(1).permutation(len(everyone))[:ARIMA_SAMPLE].tolist())
                label = f"{name} ({len(idx)}-series sample)"
            fcs, secs = _peer(s, model, idx)
            rows[label] = _score(s, fcs, idx, secs)
        if not s.smape and s.m == 1:  # intermittent: MASE rewards forecasting the median, 0
            zero = [{lv: (np.zeros(s.h), np.zeros(s.h), np.zeros(s.h)) for lv in LEVELS} for _ in everyone]
            rows["zero forecast (reference)"] = _score(s, zero, everyone, 0.0)
        if s.truth is not None:  # a perfect forecast of the expected demand: what an unbiased level scores
            exact = [{lv: (t, t, t) for lv in LEVELS} for t in s.truth]
            rows["true expected demand (reference)"] = _score(s, exact, everyone, 0.0)
            rows["true expected demand (reference)"].update(cover80=float("nan"), cover95=float("nan"))  # no interval
        if sample is not everyone:
            rows[f"auto ({len(sample)}-series sample)"] = _score(s, [ours[i] for i in sample], sample, t_ours)
            rows[f"auto ({len(sample)}-series sample)"]["ms_per_series"] = rows["auto"]["ms_per_series"]
    _print(s, rows)
    full = {k: v for k, v in rows.items() if v["series"] == len(s.train) and k != "auto" and "reference" not in k}
    best = min(full, key=lambda k: full[k]["mase"])
    verdict = {"best_peer": best, "auto_mase": rows["auto"]["mase"], "peer_mase": full[best]["mase"],
               "auto_beats_best_peer": rows["auto"]["mase"] < full[best]["mase"],
               "auto_over_autoets_time": rows["auto"]["ms_per_series"] / rows["AutoETS"]["ms_per_series"]}
    if not s.smape and s.m == 1:
        rbest = min(full, key=lambda k: full[k]["rmsse"])
        verdict.update(best_peer_rmsse=rbest, auto_beats_best_peer_rmsse=rows["auto"]["rmsse"] < full[rbest]["rmsse"])
        print(f"  -> auto RMSSE {rows['auto']['rmsse']:.3f} vs best peer {rbest} {full[rbest]['rmsse']:.3f}")
    print(f"  -> auto MASE {verdict['auto_mase']:.3f} vs best peer {best} {verdict['peer_mase']:.3f} "
          f"({'better' if verdict['auto_beats_best_peer'] else 'NOT better'}); "
          f"time {verdict['auto_over_autoets_time']:.2f}x AutoETS", flush=True)
    return {"title": s.title, "horizon": s.h, "season_length": s.m, "mase_scale_lag": s.scale_m, "rows": rows,
            "verdict": verdict}


COLD = """
import time, numpy as np
t0 = time.perf_counter()
from smartstock.forecasting.base import make_forecaster
import smartstock.forecasting.engine as e; e.statsforecast_models()
t1 = time.perf_counter()
y = 100 + 10 * np.sin(np.arange(80) * 2 * np.pi / 4) + np.random.default_rng(0).normal(0, 3, 80)
make_forecaster("auto", season_length=4, horizon=8).fit(y).predict(8)
t2 = time.perf_counter()
make_forecaster("auto", season_length=4, horizon=8).fit(y).predict(8)
t3 = time.perf_counter()
import importlib.util, sys
print(1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (t3 - t2), int("numba" in sys.modules), int(importlib.util.find_spec("numba") is not None))
"""


def cold_start() -> dict:
    """A fresh process (as the device's forecast child): import, first and second `auto` fit."""
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", COLD], capture_output=True, text=True, cwd=ROOT, check=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        imp, first, second, numba_loaded, numba_installed = out.stdout.split()
        runs.append({"import_ms": float(imp), "first_fit_ms": float(first), "second_fit_ms": float(second)})
    res = {"runs": runs, "numba_loaded": bool(int(numba_loaded)), "numba_installed": bool(int(numba_installed))}
    print("engine cold start (fresh process; run 1 / run 2): import "
          + " / ".join(f"{r['import_ms']:.0f}" for r in runs) + " ms, first auto fit "
          + " / ".join(f"{r['first_fit_ms']:.0f}" for r in runs) + " ms, second fit "
          + " / ".join(f"{r['second_fit_ms']:.1f}" for r in runs) + f" ms; numba loaded: {res['numba_loaded']}")
    return res


def lstm_batch() -> dict | None:
    from smartstock.forecasting.lstm import LstmRunner

    folder = ROOT / "models" / "demand"
    out = {}
    for fmt, name in (("onnx", "demand_lstm.onnx"), ("tflite", "demand_lstm.tflite")):
        path = folder / name
        if not path.exists():
            print(f"skipped LSTM {fmt}: {path} not found (run `make models`)")
            continue
        runner = LstmRunner(path)
        w = runner.manifest.window
        windows = np.random.default_rng(0).gamma(2.0, 20.0, size=(1000, w))
        stats = time_per_call(lambda: runner.predict_windows(windows), min_time_s=2.0)
        out[fmt] = {"skus": 1000, "ms_per_batch": stats["mean_ms"], "p99_ms": stats["p99_ms"]}
        print(f"LSTM {fmt}: 1,000 SKUs in {stats['mean_ms']:.1f} ms per batch (p99 {stats['p99_ms']:.1f} ms)")
    return out or None


def main() -> dict:
    out: dict = {"jobs": JOBS, "series_limit": LIMIT, "cold_start": cold_start(), "sets": {}}
    for s in _sets():
        out["sets"][s.name] = run_set(s)
    if not LIMIT:
        out["lstm_batch"] = lstm_batch()
    return out


if __name__ == "__main__":
    main()
