"""Forecast accuracy and speed, side by side with statsforecast (Nixtla) in one run.

1. M3 quarterly (756 series, last 8 points held out): MASE, sMAPE and 90 % interval coverage of
   ours (auto, ensemble, theta, ets, naive, seasonal naive) and statsforecast AutoETS, Theta, AutoARIMA.
2. pmdarima's wineind (monthly Australian wine sales): 4 rolling origins, 12 months each.
3. Time per series: ours vs statsforecast, both with the same number of worker processes.
4. LSTM batch inference for 1,000 SKUs with ONNX Runtime and LiteRT (models/demand).

`python -m benchmarks forecast`; set SMARTSTOCK_BENCH_M3_SERIES=N for a quick subset.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

from benchmarks._common import ROOT, shared_data, time_per_call  # noqa: E402
from smartstock.forecasting import metrics  # noqa: E402
from smartstock.forecasting.runner import Job, forecast_many  # noqa: E402

OURS = ["auto", "ensemble", "theta", "ets", "seasonal-naive", "naive"]
PEERS = ["AutoETS", "Theta", "AutoARIMA"]
JOBS = int(os.environ.get("SMARTSTOCK_BENCH_JOBS", "2"))


def _ours(series: list[np.ndarray], h: int, m: int) -> tuple[dict[str, list[np.ndarray]], dict[str, float]]:
    fcs, secs = {}, {}
    for alias in OURS:
        t0 = time.perf_counter()
        res = list(forecast_many([Job(str(i), y, h, alias, m) for i, y in enumerate(series)], n_jobs=JOBS,
                                 progress_every=0))
        secs[alias] = time.perf_counter() - t0
        fcs[alias] = [(r.forecast.mean, r.forecast.lo, r.forecast.hi) for r in res]
    return fcs, secs


def _peers(series: list[np.ndarray], h: int, m: int) -> tuple[dict[str, list[np.ndarray]], dict[str, float]]:
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, Theta

    models = {"AutoETS": AutoETS(season_length=m), "Theta": Theta(season_length=m),
              "AutoARIMA": AutoARIMA(season_length=m)}
    df = pd.DataFrame({"unique_id": np.repeat(np.arange(len(series)), [len(y) for y in series]),
                       "ds": np.concatenate([np.arange(len(y)) for y in series]),
                       "y": np.concatenate(series)})
    fcs, secs = {}, {}
    for name, model in models.items():
        # warm the numba JIT on two series so compile time is not billed per series
        StatsForecast(models=[model], freq=1, n_jobs=1).forecast(df=df[df.unique_id < 2], h=h)
        t0 = time.perf_counter()
        out = StatsForecast(models=[model], freq=1, n_jobs=JOBS).forecast(df=df, h=h, level=[90])
        secs[name] = time.perf_counter() - t0
        ids = out["unique_id"].to_numpy()
        cols = [out[c].to_numpy() for c in (name, f"{name}-lo-90", f"{name}-hi-90")]
        fcs[name] = [tuple(c[ids == i] for c in cols) for i in range(len(series))]
    return fcs, secs


def _score(train: list[np.ndarray], test: list[np.ndarray], fcs: dict[str, list[tuple]], m: int
           ) -> list[dict[str, float | str]]:
    """sMAPE, MASE of the point forecasts and coverage of the 90 % intervals, averaged over series."""
    rows = []
    for name, f in fcs.items():
        rows.append({"model": name,
                     "smape": float(np.mean([metrics.smape(a, b[0]) for a, b in zip(test, f)])),
                     "mase": float(np.mean([metrics.mase(a, b[0], t, m) for a, b, t in zip(test, f, train)])),
                     "coverage90": float(np.mean([metrics.coverage(a, b[1], b[2]) for a, b in zip(test, f)]))})
    return sorted(rows, key=lambda r: r["mase"])


def _print(title: str, rows: list[dict], secs: dict[str, float] | None = None, n: int = 1) -> None:
    print(title)
    print(f"  {'model':16s} {'sMAPE %':>8s} {'MASE':>7s} {'cover90':>8s}" + (f" {'ms/series':>10s}" if secs else ""))
    for r in rows:
        extra = f" {1000 * secs[r['model']] / n:10.1f}" if secs else ""
        print(f"  {r['model']:16s} {r['smape']:8.3f} {r['mase']:7.3f} {r['coverage90']:8.3f}{extra}")


def m3() -> dict | None:
    path = shared_data("m3_quarterly.csv")
    if path is None:
        return None
    import pandas as pd

    df = pd.read_csv(path)
    limit = int(os.environ.get("SMARTSTOCK_BENCH_M3_SERIES", "0"))
    groups = [g for _, g in df.groupby("unique_id", sort=True)]
    if limit:
        groups = [groups[i] for i in np.random.default_rng(0).permutation(len(groups))[:limit]]
    h = int(groups[0]["horizon"].iloc[0])
    series = [g["y"].to_numpy(float) for g in groups]
    train, test = [y[:-h] for y in series], [y[-h:] for y in series]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, t_ours = _ours(train, h, 4)
        peers, t_peers = _peers(train, h, 4)
    rows = _score(train, test, {**ours, **peers}, 4)
    secs = {**t_ours, **t_peers}
    _print(f"M3 quarterly: {len(series)} series, horizon {h}, season 4, {JOBS} processes "
           "(wall ms per series, shared CPU)", rows, secs, len(series))
    by = {r["model"]: r for r in rows}
    verdict = {p: {"smape": by["auto"]["smape"] < by[p]["smape"], "mase": by["auto"]["mase"] < by[p]["mase"]}
               for p in ["seasonal-naive", *PEERS]}
    print("  auto better than:", ", ".join(f"{p} (sMAPE {v['smape']}, MASE {v['mase']})" for p, v in verdict.items()))
    return {"series": len(series), "horizon": h, "table": rows,
            "ms_per_series": {k: 1000 * v / len(series) for k, v in secs.items()},
            "auto_time_ratio_vs": {p: t_ours["auto"] / t_peers[p] for p in PEERS}, "auto_beats": verdict}


def wineind() -> dict:
    from pmdarima.datasets import load_wineind

    y = np.asarray(load_wineind(), float)
    h, m = 12, 12
    origins = [len(y) - h * k for k in range(4, 0, -1)]
    train = [y[:o] for o in origins]
    test = [y[o:o + h] for o in origins]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, _ = _ours(train, h, m)
        peers, _ = _peers(train, h, m)
    rows = _score(train, test, {**ours, **peers}, m)
    _print(f"wineind (monthly, {len(y)} points): {len(origins)} rolling origins x {h} months", rows)
    return {"origins": origins, "horizon": h, "table": rows}


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
        out[fmt] = {"skus": 1000, "ms_per_batch": stats["mean_ms"], "us_per_sku": stats["mean_ms"],
                    "p99_ms": stats["p99_ms"]}
        print(f"LSTM {fmt}: 1,000 SKUs in {stats['mean_ms']:.1f} ms per batch (p99 {stats['p99_ms']:.1f} ms), "
              f"= {stats['mean_ms']:.1f} us per SKU")
    if "onnx" in out and "tflite" in out:
        out["tflite_over_onnx"] = out["tflite"]["ms_per_batch"] / out["onnx"]["ms_per_batch"]
    return out or None


def main() -> dict:
    return {"jobs": JOBS, "m3": m3(), "wineind": wineind(), "lstm_batch": lstm_batch()}


if __name__ == "__main__":
    main()
