"""`smartstock demo`: the appliance's parts run end to end on generated data, as a flat list of steps.

Each step is a small function of a shared `DemoContext`; `STEPS` is the order. Later parts (vision,
forecasting, the edge service, MQTT) extend the demo by adding steps, not by growing one function.
Everything is seeded and idempotent: running the demo twice into the same folder gives the same figures.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smartstock.commands._common import cli_command
from smartstock.config import Config, load_config
from smartstock.store import Store, open_store

logger = logging.getLogger(__name__)

DEMO_END = dt.date(2026, 10, 31)  # fixed, so the demo's figures are reproducible
DEMO_DAYS = 730

# What the generated SKUs look like: base demand per day, trend per year, weekly and annual amplitude.
# `spare` parts sell rarely (intermittent demand).
DEMO_SKUS: dict[str, dict[str, Any]] = {
    "GEAR-A": {"base": 40.0, "trend": 0.15, "weekly": 0.25, "annual": 0.20, "price": 6.5},
    "HOUSING-B": {"base": 15.0, "trend": 0.05, "weekly": 0.10, "annual": 0.35, "price": 24.0},
    "BOLT-C": {"base": 120.0, "trend": 0.0, "weekly": 0.30, "annual": 0.05, "price": 0.3},
    "SPARE-D": {"base": 0.15, "spare": True, "price": 89.0},
}

# The demo's config: the policy inputs of each SKU (see smartstock.example.toml for every key).
DEMO_CONFIG = """\
# Written by `smartstock demo`: policy inputs per SKU, read by `smartstock policy SKU --config ...`
[inventory.defaults]
order_cost = 50.0
holding_cost = 2.0
lead_time_days = 7.0

[inventory.skus.GEAR-A]        # made on this line: EPQ, set-up cost, yield from inspection
order_cost = 120.0
holding_cost = 1.5
unit_cost = 6.0
production_rate = 40000.0
lead_time_days = 3.0
lead_time_std_days = 1.0

[inventory.skus.HOUSING-B]     # bought in, fill-rate target
order_cost = 80.0
holding_cost = 4.0
unit_cost = 20.0
lead_time_days = 14.0
lead_time_std_days = 4.0
service_level = 0.98
service_type = "fill_rate"

[inventory.skus.BOLT-C]        # cheap, reviewed weekly
order_cost = 30.0
holding_cost = 0.05
unit_cost = 0.25
lead_time_days = 5.0
review_period_days = 7.0

[inventory.skus.SPARE-D]       # intermittent spare part, long and uncertain lead time
order_cost = 60.0
holding_cost = 15.0
unit_cost = 75.0
lead_time_days = 30.0
lead_time_std_days = 10.0
service_level = 0.9
"""

# Stock movements booked by the demo (ref makes each one idempotent): sku, kind, quantity.
DEMO_MOVEMENTS: list[tuple[str, str, float]] = [
    ("GEAR-A", "produced", 1520.0), ("GEAR-A", "scrapped", 80.0), ("GEAR-A", "sold", 1290.0),
    ("HOUSING-B", "received", 600.0), ("HOUSING-B", "sold", 410.0),
    ("BOLT-C", "received", 5000.0), ("BOLT-C", "sold", 3350.0),
    ("SPARE-D", "received", 6.0), ("SPARE-D", "sold", 2.0),
]


@dataclass
class DemoContext:
    """What the steps share. `say` tells the user what is happening (the CLI prints it)."""

    out: Path
    seed: int = 0
    say: Callable[[str], None] = logger.info
    config: Config | None = None
    config_path: Path | None = None
    store: Store | None = None
    sales_csv: Path | None = None
    stock: dict[str, dict[str, float]] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)

    def need(self, what: str) -> Any:
        """An attribute an earlier step sets; a clear error when the steps were reordered."""
        value = getattr(self, what)
        if value is None:
            raise RuntimeError(f"demo step order: {what} is not set yet (run the step that makes it first)")
        return value


def sample_sales(seed: int = 0, end: dt.date = DEMO_END, days: int = DEMO_DAYS) -> list[tuple[str, dt.date, float, float]]:
    """(sku, date, quantity, price) rows: trend x weekly x annual seasonality x Poisson noise; spares intermittent."""
    rng = np.random.default_rng(seed)
    start = end - dt.timedelta(days=days - 1)
    rows = []
    weekday_shape = np.array([1.0, 1.1, 1.1, 1.0, 1.2, -0.6, -1.0])  # Mon..Sun relative to the week
    for sku, spec in DEMO_SKUS.items():
        for i in range(days):
            day = start + dt.timedelta(days=i)
            if spec.get("spare"):
                qty = float(rng.poisson(2.0) + 1) if rng.random() < spec["base"] / 3.0 else 0.0
            else:
                level = spec["base"] * (1 + spec["trend"] * i / 365.0)
                level *= 1 + spec["weekly"] * weekday_shape[day.weekday()]
                level *= 1 + spec["annual"] * math.sin(2 * math.pi * day.timetuple().tm_yday / 365.25)
                qty = float(rng.poisson(max(level, 0.0)))
            if qty > 0:
                rows.append((sku, day, qty, spec["price"]))
    return rows


# -- steps ---------------------------------------------------------------------------------------
def step_config(ctx: DemoContext) -> None:
    ctx.config_path = ctx.out / "smartstock.toml"
    ctx.config_path.write_text(DEMO_CONFIG, encoding="utf-8")
    ctx.config = load_config(ctx.config_path)
    ctx.store = open_store(ctx.out / "state")
    ctx.outputs.append(ctx.config_path)
    ctx.say(f"config with per-SKU policy inputs: {ctx.config_path}")


def step_generate_sales(ctx: DemoContext) -> None:
    rows = sample_sales(ctx.seed)
    ctx.sales_csv = ctx.out / "sample_sales.csv"
    with open(ctx.sales_csv, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sku", "date", "quantity", "price"])
        w.writerows((s, d.isoformat(), f"{q:g}", f"{p:g}") for s, d, q, p in rows)
    ctx.outputs.append(ctx.sales_csv)
    ctx.say(f"generated {len(rows)} sales rows for {len(DEMO_SKUS)} SKUs over {DEMO_DAYS} days: {ctx.sales_csv}")


def step_import_sales(ctx: DemoContext) -> None:
    from smartstock.ingest import iter_sales_csv
    from smartstock.store.sales import import_sales

    s = import_sales(ctx.need("store"), iter_sales_csv(ctx.need("sales_csv")), source="demo")
    ctx.say(f"imported sales: {s.stored} new, {s.duplicates} already stored, {s.rejected} rejected")


def step_book_stock(ctx: DemoContext) -> None:
    from smartstock.store.stock import book, levels

    store = ctx.need("store")
    with store.transaction() as conn:
        new = sum(book(conn, sku, kind, qty, ref=f"demo:{sku}:{kind}", note="demo")  # type: ignore[arg-type]
                  for sku, kind, qty in DEMO_MOVEMENTS)
    with store.read() as conn:
        ctx.stock = levels(conn)
    ctx.say(f"booked {new} stock movements (produced, scrapped, received, sold)")


def step_policies(ctx: DemoContext) -> None:
    """Each SKU's plan from `plan_sku`, the one function behind `smartstock policy`, the report, the status
    page and MQTT, as of DEMO_END (the sales end there; a later run date must not read as a stale feed)."""
    from smartstock.inventory.plan import plan_sku
    from smartstock.store.skus import effective_policy

    store, config = ctx.need("store"), ctx.need("config")
    with store.read() as conn:
        for sku in DEMO_SKUS:
            plan = plan_sku(conn, config, sku, today=DEMO_END, strict=True)
            plan["as_of"] = DEMO_END.isoformat()  # reproducible: the demo plans as of its fixed end
            ctx.policies[sku] = {**plan, "inputs": effective_policy(config.inventory, conn, sku).model_dump()}
    ctx.say(f"computed EOQ, safety stock and reorder point for {len(ctx.policies)} SKUs")


def step_write_summary(ctx: DemoContext) -> None:
    path = ctx.out / "policy.json"
    path.write_text(json.dumps({"stock": ctx.stock, "policies": ctx.policies}, indent=2), encoding="utf-8")
    ctx.outputs.append(path)


def step_appliance(ctx: DemoContext) -> None:
    """The edge service itself on replayed generated parts (shipped model, status page, MQTT if installed).
    The device runtime lives in `edge/`; it is imported only here, as `smartstock run` does."""
    from edge.demo_appliance import run_appliance

    if run_appliance(ctx, ctx.say):  # {} when skipped (no shipped model)
        ctx.outputs += [ctx.out / "status.json", ctx.out / "metrics.txt", ctx.out / "appliance.json"]


def step_report(ctx: DemoContext) -> None:
    """The supervisor report (HTML + PNG charts) from the demo's store, as `smartstock report` makes it.
    It reuses the model the device chose per SKU (its forecast runs), so it comes after the appliance;
    without those runs (the appliance step left out) it is skipped instead of re-running the selection."""
    store = ctx.need("store")
    if store.query_one("SELECT COUNT(*) FROM forecast_runs")[0] == 0:
        ctx.say("supervisor report skipped: no forecasts in the store yet (the appliance step makes them)")
        return
    from smartstock.report import build_report

    result = build_report(ctx.out / "report", ctx.need("config"), store=store)
    ctx.outputs.append(result.index)
    ctx.say(f"supervisor report: {result.index} ({len(result.charts)} PNG charts beside it; open it in a browser, "
            f"or run `{cli_command()} report --out DIR --state-dir {ctx.out / 'state'} --config {ctx.config_path}`)")


STEPS: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("config", step_config),
    ("sales", step_generate_sales),
    ("import", step_import_sales),
    ("stock", step_book_stock),
    ("policy", step_policies),
    ("summary", step_write_summary),
    ("appliance", step_appliance),
    ("report", step_report),
]


def run_demo(out: Path | str, *, seed: int = 0, say: Callable[[str], None] | None = None,
             steps: list[tuple[str, Callable[[DemoContext], None]]] | None = None,
             after_step: Callable[[str, DemoContext], None] | None = None) -> DemoContext:
    """Run the steps in order into `out`; the store is closed at the end even when a step fails.

    `after_step(name, ctx)` runs after each step, so the CLI can show a step's figures before a later
    (longer, or failing) step starts.
    """
    ctx = DemoContext(out=Path(out), seed=seed, say=say or logger.info)
    ctx.out.mkdir(parents=True, exist_ok=True)
    try:
        for name, step in steps or STEPS:
            logger.debug("demo step %s", name)
            step(ctx)
            if after_step is not None:
                after_step(name, ctx)
    finally:
        if ctx.store is not None:
            ctx.store.close()
    return ctx
