"""`smartstock report --out DIR`: the supervisor report (HTML + PNG charts) from the store or CSV files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smartstock.commands._common import add_store_options, load
from smartstock.config import resolve_state_dir
from smartstock.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the supervisor report (index.html + PNG charts) into a folder",
                       description="Charts of sales, forecast vs actual over a backtest, EOQ and reorder point, "
                                   "the (s,Q) policy replayed on actual demand, defect rates and the model's "
                                   "confusion matrix, with a summary table. Data: the device's store, or CSVs.")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; index.html + charts/)")
    add_store_options(p)
    p.add_argument("--sales", type=Path, default=None,
                   help="sales CSV (sku,date,quantity or unique_id,ds,y) instead of the store's sales")
    p.add_argument("--inspections", type=Path, default=None,
                   help="inspections CSV (ts,label[,sku][,is_defect]) instead of the store's inspections")
    p.add_argument("--model", type=Path, default=None,
                   help="defect model file or folder whose evaluation to show (default: the configured one)")
    p.add_argument("--top", type=int, default=5, help="SKUs (by units sold) that get their own charts (default 5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from smartstock.report import build_report
    from smartstock.store.db import STORE_FILENAME, open_store

    config = load(args)
    state_dir = resolve_state_dir(args.state_dir, config)
    for name, path in (("--sales", args.sales), ("--inspections", args.inspections)):
        if path is not None and not path.is_file():
            raise InputError(f"{name} {path}: file not found", hint="pass an existing CSV file")
    # A report only reads: it must not create a store where there is none.
    store = open_store(state_dir) if (state_dir / STORE_FILENAME).exists() else None
    if store is None and args.sales is None:
        print(f"note: no store in {state_dir} and no --sales CSV: the sales charts will say 'no data'",
              file=sys.stderr)
    try:
        result = build_report(args.out, config, store=store, sales_csv=args.sales,
                              inspections_csv=args.inspections, model_path=args.model, top_n=args.top)
    finally:
        if store is not None:
            store.close()
    for line in result.rejected:
        print(line, file=sys.stderr)
    print(f"report: {result.index} ({len(result.charts)} charts in {result.index.parent / 'charts'})")
    if result.rejected:
        print(f"{len(result.rejected)} input row(s) rejected (listed above); the report uses the others",
              file=sys.stderr)
        return InputError.exit_code
    return 0
