"""`smartstock demo --out DIR`: generated sales imported, stock booked, policy figures printed."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from smartstock.commands._common import cli_command, print_table

if TYPE_CHECKING:
    from edge.demo import DemoContext


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the demo on generated data (seconds; no hardware or network needed)")
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="folder for the demo's files and store")
    p.add_argument("--seed", type=int, default=0, help="random seed of the generated data")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from edge.demo import run_demo

    def after_step(name: str, ctx: DemoContext) -> None:
        if name == "policy":
            _print_inventory(ctx)

    ctx = run_demo(args.out, seed=args.seed, say=lambda msg: print(f"- {msg}", flush=True), after_step=after_step)
    state = args.out / "state"
    print(f"\nOutput in {args.out}/: " + ", ".join(_under(p, args.out) for p in ctx.outputs)
          + ", state/ (the SQLite store)")
    cmd = cli_command()
    print(f"Try: {cmd} policy GEAR-A --config {args.out}/smartstock.toml --state-dir {state}")
    if cmd != "smartstock" and " " not in cmd:  # the venv's script: say how to get the short name
        print(f"(plain `smartstock` works after `source {Path(cmd).parent}/activate`)")
    return 0


def _under(path: Path, out: Path) -> str:
    """`report/index.html` rather than `index.html`: the name a user can open from `out`."""
    try:
        return str(Path(path).relative_to(out))
    except ValueError:
        return str(path)


def _print_inventory(ctx: DemoContext) -> None:
    """Stock and policy tables, printed as soon as the policy step has run."""
    print("\nStock (units)")
    print_table([{"sku": sku, "on_hand": row["on_hand"], "produced": row["produced"], "scrapped": row["scrapped"],
                  "received": row["received"], "sold": row["sold"], "defect_rate": f"{row['defect_rate']:.1%}"}
                 for sku, row in ctx.stock.items()])
    print("\nPolicy per SKU (demand from the last 365 days of sales; Q = EOQ/EPQ lot in good units, "
          "start qty = Q / (1 - defect rate))")
    rows = []
    for sku, r in ctx.policies.items():
        cover = r["days_of_cover"]
        rows.append({"sku": sku, "demand/day": r["demand_per_day"], "model": r["lot_model"], "Q": r["lot_size"],
                     "start qty": r["order_quantity"], "safety": r["safety_stock"], "ROP": r["reorder_point"],
                     "up-to": r["order_up_to"] if r["order_up_to"] is not None else "-",
                     "cover (d)": cover if cover is not None and math.isfinite(cover) else "-",
                     "reorder": "YES" if r["reorder_now"] else "no"})
    print_table(rows, floatfmt="{:.1f}")
    print(flush=True)
