"""`smartstock sales import FILE.csv` and `smartstock sales summary`: the sales history cache."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smartstock.commands._common import add_store_options, print_json, print_table, store_from_args

MAX_PRINTED_ERRORS = 200


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sales", help="import and summarise sales history")
    ssub = p.add_subparsers(dest="sales_command", metavar="ACTION", required=True)
    imp = ssub.add_parser("import", help="import a sales CSV (sku,date,quantity[,price] or unique_id,ds,y); "
                                         "idempotent; exit 3 when rows were rejected")
    imp.add_argument("file", type=Path)
    imp.add_argument("--book-stock", action="store_true",
                     help="also book each sale as a `sold` stock movement (off: history should not drain today's stock)")
    imp.add_argument("--source", default=None, help="label stored with the rows (default: the file name)")
    imp.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_store_options(imp)
    imp.set_defaults(func=_import)
    summ = ssub.add_parser("summary", help="rows, total quantity, first/last date per SKU")
    summ.add_argument("--json", action="store_true")
    add_store_options(summ)
    summ.set_defaults(func=_summary)


def _import(args: argparse.Namespace) -> int:
    from smartstock.errors import InputError
    from smartstock.ingest import RowError, open_sales_csv
    from smartstock.store.sales import import_sales

    printed = 0

    def report(err: RowError) -> None:
        nonlocal printed
        printed += 1
        if printed <= MAX_PRINTED_ERRORS:
            print(f"{args.file}:{err.line}: {err.reason}", file=sys.stderr)

    with open_sales_csv(args.file) as reader, store_from_args(args) as store:
        summary = import_sales(store, reader, source=args.source or args.file.name, book_stock=args.book_stock,
                               on_error=report)
        naming = reader.naming
    if printed > MAX_PRINTED_ERRORS:
        print(f"{args.file}: ... {printed - MAX_PRINTED_ERRORS} more rejected row(s) not shown", file=sys.stderr)
    if args.json:
        print_json({"file": str(args.file), "columns": naming, **summary.to_dict()})
    else:
        print(f"{args.file}: {summary.read} read, {summary.stored} stored, {summary.duplicates} duplicates skipped, "
              f"{summary.rejected} rejected" + (" (also booked as sold stock)" if args.book_stock else ""))
    if summary.read == 0 and not summary.rejected:
        print(f"warning: {args.file} has a header but no data rows; nothing was imported", file=sys.stderr)
    if summary.rejected:
        print(f"error: {summary.rejected} row(s) rejected (listed above with their line); the good rows were stored",
              file=sys.stderr)
        return InputError.exit_code
    return 0


def _summary(args: argparse.Namespace) -> int:
    from smartstock.store.sales import sales_summary

    with store_from_args(args) as store, store.read() as conn:
        per_sku = sales_summary(conn)
    total_rows = sum(v["rows"] for v in per_sku.values())
    import math

    totals = [v["total_quantity"] for v in per_sku.values()]
    total_qty = sum(totals) if None not in totals else None
    if total_qty is not None and not math.isfinite(total_qty):
        total_qty = None  # overflowed: JSON has no Infinity
    if args.json:
        print_json({"rows": total_rows, "total_quantity": total_qty, "skus": per_sku})
        return 0
    print_table([{"sku": s, **v} for s, v in per_sku.items()])
    print(f"{len(per_sku)} SKU(s), {total_rows} rows, total quantity "
          + (f"{total_qty:g}" if total_qty is not None else "too large to sum (a row above 1e9 units stored earlier?)"))
    return 0
