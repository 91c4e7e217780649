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

Equal achieved service: at one nominal target the drivers land at different achieved services, so
their stock is not comparable. The same forecasts are replayed at a sweep of targets (0.6-0.99)
and each driver's stock is read at an achieved cycle service of 0.95 (and fill rate
0.99), linear between the two swept targets whose achieved figures bracket it; auto's stock over each
peer's at that level comes with a 90 % interval from a paired bootstrap over series. Both verdicts are
printed: at the nominal target and at equal achieved service. Every figure says how many replenishment
cycles it rests on.

Sets: M4 weekly, last 156 weeks (13 held out, L = 2), M3 quarterly (8 held out, L = 1) from
../shared/data (skipped with a message when absent), and a generated intermittent set (seeded).
`python -m benchmarks inventory`. Environment: SMARTSTOCK_BENCH_INV_SETS=m4w156,m3q,intermittent
(the sets to run), SMARTSTOCK_BENCH_INV_SERIES=N caps the series per set, SMARTSTOCK_BENCH_INV_PARTS=N
generated intermittent parts (default 200; 2000 measures the noise of 200 x 13 weeks away),
SMARTSTOCK_BENCH_INV_SEED (default 13), SMARTSTOCK_BENCH_INV_TARGETS (the sweep, comma-separated).
"""

from __future__ import annotations

import math
import os
import time
import warnings

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

from benchmarks._common import shared_data  # noqa: E402
from benchmarks._service import FIELDS, at_level, bootstrap_ratio, bootstrap_se, bracket, pooled  # noqa: E402

TARGET = 0.95
TRUE_RATE = "true rate (ref.)"  # the generator's expected demand: a reference driver, not a peer
EOQ_PERIODS = 3.0
WINDOWS = 3
JOBS = int(os.environ.get("SMARTSTOCK_BENCH_JOBS", "2"))
LIMIT = int(os.environ.get("SMARTSTOCK_BENCH_INV_SERIES", "0"))
SETS = os.environ.get("SMARTSTOCK_BENCH_INV_SETS", "m4w156,m3q,intermittent").split(",")
PARTS = int(os.environ.get("SMARTSTOCK_BENCH_INV_PARTS", "200"))  # generated intermittent parts
SEED = int(os.environ.get("SMARTSTOCK_BENCH_INV_SEED", "13"))
TARGETS = tuple(float(t) for t in  # the policy takes service targets in (0.5, 1)
                os.environ.get("SMARTSTOCK_BENCH_INV_TARGETS", "0.6,0.7,0.8,0.9,0.93,0.95,0.97,0.98,0.99").split(","))
CSL_LEVEL, FILL_LEVEL = 0.95, 0.99  # the achieved service at which the drivers' stock is compared


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
def replay_series(train: list[np.ndarray], test: list[np.ndarray], demand: list[tuple[float, float]], lead: int,
                  periods_per_year: float, targets: tuple[float, ...]) -> tuple[list[np.ndarray], dict[str, int]]:
    """compute_policy per series and target, simulate_sq over its held-out periods: one (series x
    _service.FIELDS) array per target (stock nan where the series is skipped) and the safety stock
    bases at the first target."""
    from smartstock.config import SkuPolicy
    from smartstock.errors import SmartStockError
    from smartstock.inventory.lead_time import DemandSample
    from smartstock.inventory.policy import DemandEstimate, compute_policy
    from smartstock.report.simulate import simulate_sq

    per = [np.full((len(train), len(FIELDS) + 1), np.nan) for _ in targets]  # + stock-out periods
    bases: dict[str, int] = {}
    for i, (y, a, (mean, sd)) in enumerate(zip(train, test, demand)):
        mu = float(np.mean(y[-max(len(a), 1) * 4:]))  # recent mean demand: the cost scale, same for every driver
        if mu <= 0 or mean <= 0:
            continue
        holding = 1.0
        order_cost = (EOQ_PERIODS * mu) ** 2 * holding / (2 * mu * periods_per_year)  # EOQ(mu) = 3 periods
        # the recent history (two years) lets the policy use an empirical lead-time demand on lumpy series
        estimate = DemandEstimate(mean, max(sd, 0.0), "bench", sample=DemandSample.of(y, 1.0,
                                                                                      max_days=2 * periods_per_year))
        actual = [max(0.0, float(v)) for v in a]
        for j, target in enumerate(targets):
            pol = SkuPolicy(order_cost=order_cost, holding_cost=holding, lead_time_days=lead, service_level=target,
                            service_type="cycle")
            try:
                res = compute_policy(pol, estimate, days_per_year=periods_per_year)
                sim = simulate_sq(actual, reorder_point=res.reorder_point, order_quantity=res.lot_size,
                                  lead_time_days=lead)
            except SmartStockError:
                continue
            if j == 0:
                kind = res.safety_stock_basis.split(":")[0]
                bases[kind] = bases.get(kind, 0) + 1
            final = bool(sim.short_days) and (not sim.arrival_days or sim.short_days[-1] >= sim.arrival_days[-1])
            n = len(sim.arrival_days) + int(final)
            per[j][i] = (n, round((1.0 - sim.cycle_service_level) * n) if n else 0, sim.served_total,
                         sim.demand_total, sim.avg_on_hand / mu, len(sim.short_days))
    return per, bases


def summary(per: np.ndarray, bases: dict[str, int]) -> dict:
    """The one-target row: pooled figures, stock-out periods per series, series used and skipped."""
    ok = np.isfinite(per[:, 4])
    p = pooled(per[:, :5])
    return {"series": int(ok.sum()), "skipped": int((~ok).sum()), "cycles": int(p["cycles"]),
            "cycle_service_level": p["cycle_service_level"], "fill_rate": p["fill_rate"],
            "avg_stock_periods": p["avg_stock_periods"],
            "cycle_service_se": bootstrap_se(per[:, :5]),
            "stockout_periods_per_series": float(np.mean(per[ok, 5])) if ok.any() else float("nan"),
            "safety_stock_basis": bases}


def _ratio_text(r: dict) -> str:
    return f"{r['diff']:+.1%} [{r['lo90']:+.1%}, {r['hi90']:+.1%}]" if math.isfinite(r["diff"]) else "not reached"


def equal_service(name: str, sweeps: dict[str, list[np.ndarray]], peer_names: list[str]) -> dict:
    """Each driver's stock at an achieved cycle service of CSL_LEVEL (and fill rate FILL_LEVEL), read off
    the sweep of targets; auto's stock over each peer's at that level with a bootstrap interval."""
    print(f"  equal achieved service: targets {', '.join(f'{t:.2f}' for t in TARGETS)} replayed on the same "
          f"forecasts; stock read at cycle service {CSL_LEVEL:.2f} and fill rate {FILL_LEVEL:.2f} between the two "
          f"targets whose achieved figures bracket it")
    out: dict[str, dict] = {}
    for k, sweep in sweeps.items():
        figs = [pooled(per[:, :5]) for per in sweep]
        pts = [(f["cycle_service_level"], f["avg_stock_periods"]) for f in figs]
        fill = [(f["fill_rate"], f["avg_stock_periods"]) for f in figs]
        out[k] = {"sweep": [{"target": t, **f} for t, f in zip(TARGETS, figs)],
                  "stock_at_cycle_service": at_level(pts, CSL_LEVEL),
                  "cycle_service_bracket_cycles": [int(figs[i]["cycles"]) for i in bracket(pts, CSL_LEVEL) or ()],
                  "stock_at_fill_rate": at_level(fill, FILL_LEVEL)}
    width = max(20, 2 + max(map(len, sweeps)))
    print(f"  {'target':8s}" + "".join(f"{k:>{width}s}" for k in sweeps) + "   (achieved CSL / fill / stock)")
    for i, t in enumerate(TARGETS):
        cells = (out[k]["sweep"][i] for k in sweeps)
        print(f"  {t:<8.2f}" + "".join(
            f"{c['cycle_service_level']:.3f}/{c['fill_rate']:.3f}/{c['avg_stock_periods']:.3f}".rjust(width)
            for c in cells))
    print(f"  {'stock at CSL ' + format(CSL_LEVEL, '.2f'):24s}" + "  ".join(
        f"{k} {o['stock_at_cycle_service']:.3f} ("
        + ("+".join(map(str, o["cycle_service_bracket_cycles"])) + " cycles)" if o["cycle_service_bracket_cycles"]
           else "not reached in the sweep)") for k, o in out.items()))
    print(f"  {'stock at fill ' + format(FILL_LEVEL, '.2f'):24s}" + "  ".join(
        f"{k} {o['stock_at_fill_rate']:.3f}" for k, o in out.items()))
    verdict = {}
    for p in peer_names:
        v = {}
        for key, level, at in (("cycle_service_level", CSL_LEVEL, "stock_at_cycle_service"),
                               ("fill_rate", FILL_LEVEL, "stock_at_fill_rate")):
            r = bootstrap_ratio([s[:, :5] for s in sweeps["auto"]], [s[:, :5] for s in sweeps[p]], level, key=key)
            reached = math.isfinite(out["auto"][at]), math.isfinite(out[p][at])
            top = out[p]["sweep"][-1]
            # a peer whose highest target stays below the level needs more than that target's stock
            below = top[key] < level and reached[0] and out["auto"][at] < top["avg_stock_periods"]
            v[key] = {**r, "auto_reaches": reached[0], "peer_reaches": reached[1],
                      "less_stock": bool(r["diff"] < 0) if all(reached) else (True if below else None),
                      "outside_noise": bool(r["hi90"] < 0 or r["lo90"] > 0) if all(reached) else None}
        verdict[p] = v
    print("  auto's stock vs each peer's at equal achieved service (90 % bootstrap over series, paired): "
          + "; ".join(f"{p} CSL {_ratio_text(v['cycle_service_level'])}, fill {_ratio_text(v['fill_rate'])}"
                      for p, v in verdict.items()))
    print(f"  {name}: auto less stock at equal achieved CSL {CSL_LEVEL:.2f} than: "
          + ", ".join(f"{p} {v['cycle_service_level']['less_stock']}"
                      + {True: " (outside the noise)", False: " (within the noise)",
                         None: " (a sweep misses the level)"}[v["cycle_service_level"]["outside_noise"]]
                      for p, v in verdict.items()))
    return {"drivers": out, "verdict": verdict}


def run_set(name: str, train: list[np.ndarray], test: list[np.ndarray], m: int, lead: int, ppy: float,
            peer_names: list[str], true_rate: list[float] | None = None) -> dict:
    """`true_rate`: the generator's expected demand per period, replayed as a reference driver (not a peer)."""
    h = len(test[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d_ours, t_ours, chosen = ours(train, h, m)
        d_peers, t_peers = peers(train, h, m, peer_names)
    demand = {"auto": d_ours, **d_peers}
    secs = {"auto": t_ours, **t_peers}
    if true_rate is not None:  # what a perfect level would do with the same policy: the policy's own share
        demand[TRUE_RATE] = [(r, 0.0) for r in true_rate]
        secs[TRUE_RATE] = 0.0
    # the nominal target first, then the sweep: the forecasts are the cost, a replay per target is cheap
    targets = (TARGET, *TARGETS)
    rows, sweeps = {}, {}
    for k, d in demand.items():
        per, bases = replay_series(train, test, d, lead, ppy, targets)
        rows[k], sweeps[k] = summary(per[0], bases), per[1:]
    print(f"{name}: {len(train)} series, {h} periods held out, lead time {lead}, season {m}, target CSL {TARGET:.0%}")
    print(f"  {'driver':17s} {'CSL':>7s} {'+-se':>6s} {'fill':>7s} {'stock':>7s} {'outs':>6s} {'cycles':>7s} "
          f"{'skipped':>7s} {'s total':>8s}")
    for k, r in rows.items():
        print(f"  {k:17s} {r['cycle_service_level']:7.3f} {r['cycle_service_se']:6.3f} {r['fill_rate']:7.3f} "
              f"{r['avg_stock_periods']:7.3f} {r['stockout_periods_per_series']:6.2f} {r['cycles']:7d} "
              f"{r['skipped']:7d} {secs[k]:8.1f}")
    print("  (+-se: standard error of the cycle service over resamples of the series; cycles: replenishment cycles "
          "the figure rests on)")
    print("  safety stock basis (series):", "; ".join(
        f"{k} " + ", ".join(f"{b} {n}" for b, n in sorted(r["safety_stock_basis"].items())) for k, r in rows.items()))
    a = rows["auto"]
    verdict = {}
    for p in d_peers:
        met = a["cycle_service_level"] >= TARGET - 0.01
        less = a["avg_stock_periods"] < rows[p]["avg_stock_periods"]
        verdict[p] = {"target_met_within_1pt": met, "less_stock": less, "both": met and less}
    print(f"  {name}: at the nominal target {TARGET:.2f}: auto target met within 1 point:",
          a["cycle_service_level"] >= TARGET - 0.01, "| less stock than:",
          ", ".join(f"{p} {v['less_stock']}" for p, v in verdict.items()))
    equal = equal_service(name, sweeps, list(d_peers))
    models: dict[str, int] = {}
    for c in chosen:
        models[c] = models.get(c, 0) + 1
    return {"series": len(train), "held_out": h, "lead_time_periods": lead, "season_length": m, "target": TARGET,
            "drivers": rows, "seconds": secs, "auto_models": models, "verdict": verdict,
            "equal_service": {"targets": list(TARGETS), "cycle_service_level": CSL_LEVEL, "fill_rate": FILL_LEVEL,
                              **equal}}


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


def intermittent(n: int = PARTS, weeks: int = 156, h: int = 13, seed: int = SEED) -> dict:
    """Spare-part-like weekly demand: a sale in about 30 % of weeks, sizes 1 + Poisson, rates vary by part."""
    rng = np.random.default_rng(seed)
    n = min(n, LIMIT) if LIMIT else n
    series, rates = [], []
    for _ in range(n):
        p = rng.uniform(0.15, 0.45)
        size = rng.uniform(1.0, 6.0)
        series.append(((rng.random(weeks) < p) * (1 + rng.poisson(size, weeks))).astype(float))
        rates.append(p * (1.0 + size))
    return run_set(f"generated intermittent weekly ({n} parts, seed {seed})", [y[:-h] for y in series],
                   [y[-h:] for y in series], 52, 2, 52.0, ["AutoETS", "Theta", "CrostonSBA"], true_rate=rates)


def main() -> dict:
    sets = {"m4w156": ("m4_weekly_156", m4_weekly), "m3q": ("m3_quarterly", m3_quarterly),
            "intermittent": ("intermittent", intermittent)}
    unknown = sorted(set(SETS) - set(sets))
    if unknown:
        raise SystemExit(f"SMARTSTOCK_BENCH_INV_SETS: unknown set(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(sets)}")
    return {"jobs": JOBS, "limit": LIMIT, "parts": PARTS, "seed": SEED,
            **{key: fn() for s, (key, fn) in sets.items() if s in SETS}}


if __name__ == "__main__":
    main()
