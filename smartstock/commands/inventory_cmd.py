"""`smartstock eoq`, `policy SKU`, `sku set|show|list` and `stock [move]`: inventory figures and inputs."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from smartstock.commands._common import add_store_options, load, print_json, print_table, store_from_args

# Policy fields editable with `sku set`: option name -> (field, type, help)
_SKU_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--order-cost", "order_cost", float, "cost per order or production set-up (S)"),
    ("--holding-cost", "holding_cost", float, "holding cost per unit per year (H)"),
    ("--unit-cost", "unit_cost", float, "purchase or production cost per unit"),
    ("--lead-time-days", "lead_time_days", float, "replenishment lead time L in days"),
    ("--lead-time-std-days", "lead_time_std_days", float, "standard deviation of the lead time in days"),
    ("--service-level", "service_level", float, "target, e.g. 0.95 (cycle service level or fill rate)"),
    ("--service-type", "service_type", str, "cycle or fill_rate"),
    ("--review-period-days", "review_period_days", float, "periodic review interval (0 = continuous review)"),
    ("--production-rate", "production_rate", float, "units per year the line can make (EPQ); 0 = bought in"),
    ("--backorder-cost", "backorder_cost", float, "backorder cost per unit per year (0 = no backorders)"),
    ("--annual-demand", "annual_demand", float, "annual demand used while there is no sales history"),
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eoq", help="economic order quantity (EPQ with --production-rate, backorders with --backorder-cost)")
    p.add_argument("--demand", type=float, required=True, help="demand in units per year (D)")
    p.add_argument("--order-cost", type=float, required=True, help="cost per order or set-up (S)")
    p.add_argument("--holding-cost", type=float, required=True, help="holding cost per unit per year (H)")
    p.add_argument("--backorder-cost", type=float, default=None, help="backorder cost per unit per year (B)")
    p.add_argument("--production-rate", type=float, default=None, help="production rate in units per year (P > D)")
    p.add_argument("--unit-cost", type=float, default=0.0, help="unit cost, adds D*c to the total")
    p.add_argument("--days-per-year", type=float, default=365.0, help="for the cycle time in days")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_eoq)

    p = sub.add_parser("policy", help="EOQ, safety stock, reorder point and cover for a SKU from the store")
    p.add_argument("sku")
    p.add_argument("--window-days", type=int, default=365, help="days of sales history used for demand")
    p.add_argument("--horizon", action="store_true",
                   help="also show the time-phased plan per upcoming period (from the latest forecast run)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_store_options(p)
    p.set_defaults(func=_policy)

    sku = sub.add_parser("sku", help="per-SKU policy inputs stored on the device")
    ssub = sku.add_subparsers(dest="sku_command", metavar="ACTION", required=True)
    s = ssub.add_parser("set", help="override policy inputs of a SKU (validated; nothing changes on error)")
    s.add_argument("sku")
    s.add_argument("--name", default=None, help="display name")
    for opt, field, typ, hlp in _SKU_OPTIONS:
        s.add_argument(opt, dest=field, type=typ, default=None, help=hlp,
                       choices=["cycle", "fill_rate"] if field == "service_type" else None)
    s.add_argument("--clear", action="append", default=[], metavar="FIELD",
                   help="forget the stored override of FIELD (e.g. lead_time_days); repeatable")
    add_store_options(s)
    s.set_defaults(func=_sku_set)
    s = ssub.add_parser("show", help="effective policy of a SKU and where each value comes from")
    s.add_argument("sku")
    s.add_argument("--json", action="store_true")
    add_store_options(s)
    s.set_defaults(func=_sku_show)
    s = ssub.add_parser("list", help="SKUs known from config, overrides, stock and sales")
    s.add_argument("--json", action="store_true")
    add_store_options(s)
    s.set_defaults(func=_sku_list)

    st = sub.add_parser("stock", help="stock per SKU: on hand, produced, scrapped, sold, received, defect rate")
    st.add_argument("--json", action="store_true")
    add_store_options(st)
    st.set_defaults(func=_stock)
    msub = st.add_subparsers(dest="stock_command", metavar="ACTION")
    m = msub.add_parser("move", help="book a manual movement (receipt, adjustment, ...)")
    m.add_argument("sku")
    m.add_argument("kind", choices=["produced", "scrapped", "sold", "received", "adjusted"])
    m.add_argument("quantity", type=float, help="units (adjusted may be negative: use -- before it, e.g. -- -5)")
    m.add_argument("--ref", default=None, help="idempotency key: a movement with the same ref is booked once")
    m.add_argument("--note", default=None)
    # Defaults suppressed so `stock --state-dir X move ...` keeps the parent's value.
    m.add_argument("--config", "-c", type=Path, default=argparse.SUPPRESS, help="smartstock.toml")
    m.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS, help="state directory holding the store")
    m.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    m.set_defaults(func=_stock_move)


# -- eoq ----------------------------------------------------------------------------------------
def _eoq(args: argparse.Namespace) -> int:
    from smartstock.errors import ConfigError
    from smartstock.inventory import lot_size as ls

    d, s, h = args.demand, args.order_cost, args.holding_cost
    plain = ls.eoq(d, s, h)
    out: dict[str, Any] = {"model": "eoq", "demand": d, "order_cost": s, "holding_cost": h, "eoq": plain}
    if args.backorder_cost is not None and args.production_rate is not None:
        raise ConfigError("--backorder-cost and --production-rate cannot be combined",
                          hint="give one: backorders for bought-in parts, production rate for parts the line makes")
    if args.backorder_cost is not None:
        bo = ls.eoq_backorders(d, s, h, args.backorder_cost)
        q, cost = bo.order_quantity, bo.annual_cost
        out.update(model="eoq_backorders", backorder_cost=args.backorder_cost, max_backorder=bo.max_backorder,
                   max_inventory=bo.max_inventory, stockout_fraction=bo.stockout_fraction)
    elif args.production_rate is not None:
        pr = ls.epq_lot(d, s, h, args.production_rate)
        q, cost = pr.order_quantity, pr.annual_cost
        out.update(model="epq", production_rate=args.production_rate, epq=q, max_inventory=pr.max_inventory)
    else:
        q = plain
        cost = ls.total_cost(q, d, s, h).total if q > 0 else 0.0
    ordering = d / q * s if q > 0 else 0.0
    purchase = ls.total_cost(q, d, s, h, args.unit_cost).purchase if q > 0 else d * args.unit_cost
    n = ls.orders_per_year(d, q)
    out.update(order_quantity=q, orders_per_year=n, cycle_days=args.days_per_year / n if n else None,
               annual_ordering_cost=ordering, annual_holding_cost=cost - ordering,
               annual_purchase_cost=purchase, annual_total_cost=cost + purchase)
    if args.json:
        print_json(out)
        return 0
    label = {"eoq": "EOQ", "epq": "EPQ", "eoq_backorders": "EOQ with backorders"}[out["model"]]
    print(f"{label}: {q:.2f} units" + (" (order cost 0: lot-for-lot, order what each period needs)"
                                         if q == 0 and d > 0 else ""))
    rows = [("orders per year", f"{n:.2f}"),
            ("cycle time", f"{out['cycle_days']:.1f} days" if out["cycle_days"] else "-"),
            ("annual ordering cost", f"{ordering:.2f}"), ("annual holding cost", f"{cost - ordering:.2f}")]
    if out["model"] == "eoq_backorders":
        rows += [("largest backlog", f"{out['max_backorder']:.2f} units"),
                 ("largest stock", f"{out['max_inventory']:.2f} units"), ("plain EOQ", f"{plain:.2f} units")]
    elif out["model"] == "epq":
        rows += [("largest stock", f"{out['max_inventory']:.2f} units"), ("plain EOQ", f"{plain:.2f} units")]
    if args.unit_cost:
        rows.append(("annual purchase cost", f"{purchase:.2f}"))
    rows.append(("annual total cost", f"{cost + purchase:.2f}"))
    for k, v in rows:
        print(f"  {k:<22}{v:>14}")
    return 0


# -- policy -------------------------------------------------------------------------------------
def _policy(args: argparse.Namespace) -> int:
    from smartstock.inventory.plan import money, plan_sku
    from smartstock.store.skus import effective_policy

    config = load(args)
    with store_from_args(args, config) as store, store.read() as conn:
        plan = plan_sku(conn, config, args.sku, history_days=args.window_days, strict=True)
        inputs = effective_policy(config.inventory, conn, args.sku).model_dump()
    if args.json:
        out = {**plan, "inputs": inputs}
        if not args.horizon:
            out.pop("horizon")
        print_json(out)
        return 0
    p = plan
    print(f"SKU {args.sku} as of {p['as_of']}: on hand {p['on_hand']:g}, defect rate {p['defect_rate']:.1%}")
    print(f"  demand {p['demand_per_day']:.4g}/day (std {p['demand_std_per_day']:.4g}) from {p['demand_basis']}"
          + (f" [{p['demand_source']}]" if p["demand_source"] != p["demand_basis"] else ""))
    print(f"  last sale {p['last_sale'] or '-'}, history used up to {p['history_end'] or '-'}")
    if p["stale"]:
        print(f"  STALE SALES: {p['stale_reason']}")
    cover = f"{p['days_of_cover']:.1f}" if p["days_of_cover"] is not None else "no demand"
    rows = [("lot model", p["lot_model"]), ("EOQ", f"{p['eoq']:.2f}"),
            ("EPQ", f"{p['epq']:.2f}" if p.get("epq") is not None else "-"),
            ("lot (good units)", f"{p['lot_size']:.2f}"),
            ("order quantity (start)", f"{p['order_quantity']:.2f}"), ("safety stock", f"{p['safety_stock']:.2f}"),
            ("reorder point", f"{p['reorder_point']:.2f}"),
            ("order-up-to level", f"{p['order_up_to']:.2f}" if p["order_up_to"] is not None else "-"),
            ("days of cover", cover), ("order cost", money(p["order_cost"])),
            ("holding cost/unit/year", money(p["holding_cost"])), ("annual cost", money(p["annual_cost"])),
            ("reorder now", "YES" if p["reorder_now"] else "no")]
    for k, v in rows:
        print(f"  {k:<24}{v:>12}")
    if p["safety_stock_basis"]:
        print(f"  safety stock basis: {p['safety_stock_basis']}")
    for note in p["notes"]:
        if not note.startswith("stale sales:"):
            print(f"  note: {note}")
    if args.horizon:
        if not p["horizon"]:
            print("  time-phased plan: none (no current forecast run; `smartstock forecast --from-store` makes one)")
        else:
            print(f"  time-phased plan ({p['forecast_freq']} periods, projected from on hand {p['on_hand']:g}):")
            print_table([{"start": r["start"], "demand": r["demand"], "EOQ": r["eoq"], "start qty": r["order_quantity"],
                          "safety stock": r["safety_stock"], "reorder point": r["reorder_point"],
                          "on hand": r["projected_on_hand"], "order": r["order_total"] or "",
                          "order on": r["first_order_day"] or ""} for r in p["horizon"]], floatfmt="{:.1f}")
    return 0


# -- sku ----------------------------------------------------------------------------------------
def _sku_set(args: argparse.Namespace) -> int:
    from smartstock.store.skus import clear_overrides, known_skus, set_overrides

    values = {field: getattr(args, field) for _, field, _, _ in _SKU_OPTIONS if getattr(args, field) is not None}
    config = load(args)
    with store_from_args(args, config) as store:
        with store.transaction() as conn:
            known = set(known_skus(conn, config.inventory)) | {config.inspection.sku}
            if args.sku not in known:
                close = sorted(k for k in known if k.lower() == args.sku.lower())
                print(f"note: {args.sku} is a new SKU (not in the config, stock, sales or earlier settings); "
                      f"created it" + (f". Did you mean {', '.join(close)}?" if close else
                                       "; `smartstock sku list` shows the known ones"), file=sys.stderr)
            if args.clear:
                clear_overrides(conn, args.sku, args.clear)
            policy = set_overrides(conn, config.inventory, args.sku, values, name=args.name)
    changed = ", ".join(f"{k}={v}" for k, v in values.items()) or "nothing set"
    print(f"{args.sku}: {changed}" + (f"; cleared {', '.join(args.clear)}" if args.clear else ""))
    for k, v in policy.model_dump().items():
        print(f"  {k:<20} {v}")
    return 0


def _sku_show(args: argparse.Namespace) -> int:
    from smartstock.store.skus import get_name, get_overrides

    config = load(args)
    with store_from_args(args, config) as store:
        with store.read() as conn:
            stored = get_overrides(conn, args.sku)
            name = get_name(conn, args.sku)
    in_config = config.inventory.skus.get(args.sku, {})
    effective = {**config.inventory.policy_for(args.sku).model_dump(), **stored}
    source = {k: "store" if k in stored else "config sku" if k in in_config else "config default" for k in effective}
    if args.json:
        print_json({"sku": args.sku, "name": name, "policy": effective, "source": source})
        return 0
    print(f"SKU {args.sku}" + (f" ({name})" if name else ""))
    print_table([{"field": k, "value": v, "from": source[k]} for k, v in effective.items()], floatfmt="{:g}")
    return 0


def _sku_list(args: argparse.Namespace) -> int:
    from smartstock.store.skus import get_overrides, known_skus
    from smartstock.store.stock import levels

    config = load(args)
    with store_from_args(args, config) as store, store.read() as conn:
        stock = levels(conn)
        rows = [{"sku": s, "on_hand": stock.get(s, {}).get("on_hand", 0.0),
                 "overrides": len(get_overrides(conn, s)), "in_config": s in config.inventory.skus}
                for s in known_skus(conn, config.inventory)]
    if args.json:
        print_json(rows)
    else:
        print_table(rows)
    return 0


# -- stock --------------------------------------------------------------------------------------
def _stock(args: argparse.Namespace) -> int:
    from smartstock.store.stock import levels

    with store_from_args(args) as store, store.read() as conn:
        stock = levels(conn)
    if args.json:
        print_json({"skus": stock})
        return 0
    cols = ["sku", "on_hand", "produced", "scrapped", "sold", "received", "adjusted", "defect_rate"]
    print_table([{"sku": s, **{k: v for k, v in row.items() if k != "defect_rate"},
                  "defect_rate": f"{row['defect_rate']:.1%}"} for s, row in stock.items()], cols)
    return 0


def _stock_move(args: argparse.Namespace) -> int:
    from smartstock.errors import InvalidParameter
    from smartstock.store.stock import book, levels

    if not math.isfinite(args.quantity):
        raise InvalidParameter(f"quantity must be a finite number, got {args.quantity}")
    with store_from_args(args) as store:
        with store.transaction() as conn:
            try:
                new = book(conn, args.sku, args.kind, args.quantity, ref=args.ref, note=args.note)
            except ValueError as e:
                raise InvalidParameter(str(e)) from None
        with store.read() as conn:
            on_hand = levels(conn, args.sku).get(args.sku, {}).get("on_hand", 0.0)
    if getattr(args, "json", False):
        print_json({"sku": args.sku, "kind": args.kind, "quantity": args.quantity, "booked": new, "on_hand": on_hand})
    elif new:
        print(f"booked {args.kind} {args.quantity:g} of {args.sku}; on hand now {on_hand:g}")
    else:
        print(f"already booked (ref {args.ref}); on hand {on_hand:g}")
    return 0
