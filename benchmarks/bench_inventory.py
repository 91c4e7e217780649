"""Inventory outcome, not forecast error: each series' held-out periods replayed through the (s, Q)
policy the project computes, driven by our forecaster (`auto`) and by statsforecast's models.

Per series (one period = one bucket of the data set):
1. Fit on the history, forecast the held-out horizon H. Demand per period = mean of the forecast;
   its standard deviation = RMSE of rolling-origin backtest errors (3 windows of H) of the same
   model: ours through `smartstock.forecasting.runner.forecast_one(with_errors=True)` and
   `smartstock.planning.demand_estimate`, the peers through statsforecast's `cross_validation`.
2. `compute_policy` (the device's formulas) with lead time L periods, a 95 % cycle service level
   target and an order cost set per series so that the EOQ is about 3 periods of mean demand
   (the same inputs for every driver: only the forecast differs).
3. `simulate_sq` (the report's replay) over the held-out periods: periodic review each period,
   orders arrive L periods after they are placed, lost sales, start at s + Q.
Reported per set and driver, pooled over series: cycle service level (replenishment cycles without
a stock-out), fill rate, average stock in periods of mean demand, stock-out periods per series,
and the verdict: target met within 1 point with less average stock than the peer. On the generated
set the generator's true expected demand per period also drives the policy, as a reference: what the
policy does with a perfect forecast level (not a peer, not in the verdict).

Sets: M4 weekly, last 156 weeks (13 held out, L = 2), M3 quarterly (8 held out, L = 1) from
../shared/data (skipped with a message when absent), and a generated intermittent set (seeded).
`python -m benchmarks inventory`; SMARTSTOCK_BENCH_INV_SERIES=N caps the series per set.
"""

from __future__ import annotations

import os
import time
import warnings

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

from benchmarks._common import shared_data  # noqa: E402

TARGET = 0.95
TRUE_RATE = "true rate (ref.)"  # the generator's expected demand: a reference driver, not a peer
EOQ_PERIODS = 3.0
WINDOWS = 3
JOBS = int(os.environ.get("SMARTSTOCK_BENCH_JOBS", "2"))
LIMIT = int(os.environ.get("SMARTSTOCK_BENCH_INV_SERIES", "0"))


# -- drivers: demand estimate per period (mean, std) for every series ---------------------------
def ours(train: list[np.ndarray], h: int, m: int) -> tuple[list[tuple[float, float]], float, list[str]]:
    from smartstock.forecasting.runner import Job, forecast_many
    from smartstock.planning import demand_estimate

    t0 = time.perf_counter()
    jobs = [Job(str(i), y, h, "auto", m, 0.9, windows=WINDOWS, with_errors=True) for i, y in enumerate(train)]
    out, chosen = [], []
    for res in forecast_many(jobs, n_jobs=JOBS, progress_every=0):
        d = demand_estimate(res, "D")  # one "day" = one period: per-period mean and std
        out.append((d.mean_per_day, d.std_per_day))
        chosen.append(res.model)
    return out, time.perf_counter() - t0, chosen


def peers(train: list[np.ndarray], h: int, m: int, names: list[str]) -> tuple[dict[str, list[tuple[float, float]]],
                                                                                dict[str, float]]:
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast import models as sfm

    make = {"AutoETS": lambda: sfm.AutoETS(season_length=m),
            "Theta": lambda: sfm.DynamicOptimizedTheta(season_length=m),
            "CrostonSBA": lambda: sfm.CrostonSBA(), "ADIDA": lambda: sfm.ADIDA()}
    df = pd.DataFrame({"unique_id": np.repeat(np.arange(len(train)), [len(y) for y in train]),
                       "ds": np.concatenate([np.arange(len(y)) for y in train]), "y": np.concatenate(train)})
    out, secs = {}, {}
    for name in names:
        model = make[name]()
        alias = type(model).__name__ if name != "Theta" else "DynamicOptimizedTheta"
        StatsForecast(models=[make[name]()], freq=1, n_jobs=1).forecast(df=df[df.unique_id < 2], h=h)  # JIT warm-up
        t0 = time.perf_counter()
        sf = StatsForecast(models=[model], freq=1, n_jobs=JOBS)
        fc = sf.forecast(df=df, h=h)
        cv = sf.cross_validation(df=df, h=h, n_windows=WINDOWS, step_size=h)
        secs[name] = time.perf_counter() - t0
        mean = fc.groupby("unique_id")[alias].mean()
        err = (cv["y"] - cv[alias]).pow(2).groupby(cv["unique_id"]).mean().pow(0.5)
        out[name] = [(max(0.0, float(mean.get(i, 0.0))), float(err.get(i, 0.0)) if np.isfinite(err.get(i, np.nan))
                      else 0.0) for i in range(len(train))]
    return out, secs


# -- policy and replay --------------------------------------------------------------------------
def replay(train: list[np.ndarray], test: list[np.ndarray], demand: list[tuple[float, float]], lead: int,
           periods_per_year: float) -> dict[str, float]:
    """compute_policy per series, simulate_sq over its held-out periods, pooled figures."""
    from smartstock.config import SkuPolicy
    from smartstock.errors import SmartStockError
    from smartstock.inventory.lead_time import DemandSample
    from smartstock.inventory.policy import DemandEstimate, compute_policy
    from smartstock.report.simulate import simulate_sq

    cycles = cycles_short = 0
    served = total = 0.0
    stock, stockouts, skipped = [], [], 0
    bases: dict[str, int] = {}
    for y, a, (mean, sd) in zip(train, test, demand):
        mu = float(np.mean(y[-max(len(a), 1) * 4:]))  # recent mean demand: the cost scale, same for every driver
        if mu <= 0 or mean <= 0:
            skipped += 1
            continue
        holding = 1.0
        order_cost = (EOQ_PERIODS * mu) ** 2 * holding / (2 * mu * periods_per_year)  # EOQ(mu) = 3 periods
        pol = SkuPolicy(order_cost=order_cost, holding_cost=holding, lead_time_days=lead, service_level=TARGET,
                        service_type="cycle")
        try:
            # the recent history (two years) lets the policy use an empirical lead-time demand on lumpy series
            sample = DemandSample.of(y, 1.0, max_days=2 * periods_per_year)
            res = compute_policy(pol, DemandEstimate(mean, max(sd, 0.0), "bench", sample=sample),
                                 days_per_year=periods_per_year)
            sim = simulate_sq([max(0.0, float(v)) for v in a], reorder_point=res.reorder_point,
                              order_quantity=res.lot_size, lead_time_days=lead)
        except SmartStockError:
            skipped += 1
            continue
        kind = res.safety_stock_basis.split(":")[0]
        bases[kind] = bases.get(kind, 0) + 1
        final = bool(sim.short_days) and (not sim.arrival_days or sim.short_days[-1] >= sim.arrival_days[-1])
        n = len(sim.arrival_days) + int(final)
        if n:
            cycles += n
            cycles_short += round((1.0 - sim.cycle_service_level) * n)
        served += sim.served_total
        total += sim.demand_total
        stock.append(sim.avg_on_hand / mu)
        stockouts.append(len(sim.short_days))
    return {"series": len(stock), "skipped": skipped, "cycles": cycles,
            "cycle_service_level": 1.0 - cycles_short / cycles if cycles else float("nan"),
            "fill_rate": served / total if total else float("nan"),
            "avg_stock_periods": float(np.mean(stock)) if stock else float("nan"),
            "stockout_periods_per_series": float(np.mean(stockouts)) if stockouts else float("nan"),
            "safety_stock_basis": bases}


def run_set(name: str, train: list[np.ndarray], test: list[np.ndarray], m: int, lead: int, ppy: float,
            peer_names: list[str], true_rate: list[float] | None = None) -> dict:
    """`true_rate`: the generator's expected demand per period, replayed as a reference driver (not a peer)."""
    h = len(test[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d_ours, t_ours, chosen = ours(train, h, m)
        d_peers, t_peers = peers(train, h, m, peer_names)
    rows = {"auto": replay(train, test, d_ours, lead, ppy)}
    for p, d in d_peers.items():
        rows[p] = replay(train, test, d, lead, ppy)
    secs = {"auto": t_ours, **t_peers}
    if true_rate is not None:  # what a perfect level would do with the same policy: the policy's own share
        rows[TRUE_RATE] = replay(train, test, [(r, 0.0) for r in true_rate], lead, ppy)
        secs[TRUE_RATE] = 0.0
    print(f"{name}: {len(train)} series, {h} periods held out, lead time {lead}, season {m}, target CSL {TARGET:.0%}")
    print(f"  {'driver':17s} {'CSL':>7s} {'fill':>7s} {'stock':>7s} {'outs':>6s} {'cycles':>7s} {'s total':>8s}")
    for k, r in rows.items():
        print(f"  {k:17s} {r['cycle_service_level']:7.3f} {r['fill_rate']:7.3f} {r['avg_stock_periods']:7.3f} "
              f"{r['stockout_periods_per_series']:6.2f} {r['cycles']:7d} {secs[k]:8.1f}")
    print("  safety stock basis (series):", "; ".join(
        f"{k} " + ", ".join(f"{b} {n}" for b, n in sorted(r["safety_stock_basis"].items())) for k, r in rows.items()))
    a = rows["auto"]
    verdict = {}
    for p in d_peers:
        met = a["cycle_service_level"] >= TARGET - 0.01
        less = a["avg_stock_periods"] < rows[p]["avg_stock_periods"]
        verdict[p] = {"target_met_within_1pt": met, "less_stock": less, "both": met and less}
    print("  auto: target met within 1 point:", a["cycle_service_level"] >= TARGET - 0.01, "| less stock than:",
          ", ".join(f"{p} {v['less_stock']}" for p, v in verdict.items()))
    models: dict[str, int] = {}
    for c in chosen:
        models[c] = models.get(c, 0) + 1
    return {"series": len(train), "held_out": h, "lead_time_periods": lead, "season_length": m, "target": TARGET,
            "drivers": rows, "seconds": secs, "auto_models": models, "verdict": verdict}


# -- data sets ----------------------------------------------------------------------------------
def _subset(groups: list, seed: int = 0) -> list:
    if LIMIT and len(groups) > LIMIT:
        return [groups[i] for i in sorted(np.random.default_rng(seed).permutation(len(groups))[:LIMIT])]
    return groups


def m4_weekly() -> dict | None:
    path = shared_data("m4_weekly.csv")
    if path is None:
        return None
    import pandas as pd

    df = pd.read_csv(path)
    series = _subset([g["y"].to_numpy(float)[-156:] for _, g in df.groupby("unique_id", sort=True)])
    h = 13
    return run_set("M4 weekly, last 156 weeks", [y[:-h] for y in series], [y[-h:] for y in series], 52, 2, 52.0,
                   ["AutoETS", "Theta"])


def m3_quarterly() -> dict | None:
    path = shared_data("m3_quarterly.csv")
    if path is None:
        return None
    import pandas as pd

    df = pd.read_csv(path)
    groups = _subset([g for _, g in df.groupby("unique_id", sort=True)])
    h = int(groups[0]["horizon"].iloc[0])
    # the backtest behind the standard deviation needs WINDOWS x h periods and a model fitted before them
    series = [y for g in groups if len(y := g["y"].to_numpy(float)) - h >= WINDOWS * h + 8]
    print(f"M3 quarterly: {len(groups) - len(series)} of {len(groups)} series too short for {WINDOWS} backtest "
          f"windows of {h} after holding out {h}; left out")
    return run_set("M3 quarterly", [y[:-h] for y in series], [y[-h:] for y in series], 4, 1, 4.0,
                   ["AutoETS", "Theta"])


def intermittent(n: int = 200, weeks: int = 156, h: int = 13) -> dict:
    """Spare-part-like weekly demand: a sale in about 30 % of weeks, sizes 1 + Poisson, rates vary by part."""
    rng = np.random.default_rng(13)
    n = min(n, LIMIT) if LIMIT else n
    series, rates = [], []
    for _ in range(n):
        p = rng.uniform(0.15, 0.45)
        size = rng.uniform(1.0, 6.0)
        series.append(((rng.random(weeks) < p) * (1 + rng.poisson(size, weeks))).astype(float))
        rates.append(p * (1.0 + size))
    return run_set(f"generated intermittent weekly ({n} parts, seed 13)", [y[:-h] for y in series],
                   [y[-h:] for y in series], 52, 2, 52.0, ["AutoETS", "Theta", "CrostonSBA"], true_rate=rates)


def main() -> dict:
    return {"jobs": JOBS, "limit": LIMIT, "m4_weekly_156": m4_weekly(), "m3_quarterly": m3_quarterly(),
            "intermittent": intermittent()}


if __name__ == "__main__":
    main()
