"""`smartstock fleet status | serve`: every device of a plant at a glance, from the retained MQTT topics."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from smartstock.commands._broker import add_broker_options, broker_config
from smartstock.commands._common import print_table
from smartstock.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fleet", help="every device of a plant: online, stale, model, camera, alerts (status, page)")
    fsub = p.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)

    st = fsub.add_parser("status", help="one row per device found on the broker's retained topics")
    _common(st)
    st.add_argument("--json", action="store_true", help="print the rows as JSON (for scripts)")
    st.add_argument("--wait", type=float, default=5.0,
                    help="seconds to collect the retained messages at most (default 5; it stops sooner once they "
                         "stop arriving)")
    st.set_defaults(func=_status)

    sv = fsub.add_parser("serve", help="the plant page: a live table of every device, highlighted when stale or offline")
    _common(sv)
    sv.add_argument("--http-port", type=int, default=8090, help="port of the page (default 8090; 0 picks a free one)")
    sv.add_argument("--http-host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1; 0.0.0.0 shows it to the plant network)")
    sv.set_defaults(func=_serve)


def _common(p: argparse.ArgumentParser) -> None:
    add_broker_options(p, site_help="only this site (default: every site)", line_help="only this line (default: every line)")
    p.add_argument("--stale-minutes", type=float, default=10.0,
                   help="a device online without a state message for this long is flagged stale (default 10)")
    p.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for the broker (default 10)")


def _watch(args: argparse.Namespace):
    from smartstock.fleet import FleetWatch

    if args.stale_minutes <= 0 or getattr(args, "wait", 1.0) < 0:
        raise ConfigError("--stale-minutes must be > 0 and --wait >= 0")
    mqtt, password, _cfg = broker_config(args)
    watch = FleetWatch(mqtt, prefix=args.prefix, site=args.site, line=args.line, password=password)
    return watch.start(args.connect_timeout)


COLUMNS = ["device", "site/line", "health", "last state", "model", "ota", "camera", "fps", "defects", "alerts",
           "backlog", "problems"]


def table_rows(view: Any) -> list[dict[str, Any]]:
    """The text table's cells for each DeviceRow (JSON keeps every field)."""
    out = []
    for r in view.rows:
        cams = r.cameras if len(r.cameras) > 1 else {}
        out.append({
            "device": r.device_id, "site/line": f"{r.site}/{r.line}", "health": r.health.upper() if r.health != "online" else "online",
            "last state": _age(r.state_age_s) if r.state_age_s is not None else "never",
            "model": f"{r.model_id or '?'} r{r.model_release}" if r.model_release else "–",
            "ota": (r.ota_status or "–") + (f" ({r.ota_error})" if r.ota_error else ""),
            "camera": ", ".join(f"{k}:{v}" for k, v in cams.items()) if cams else (r.camera or "–"),
            "fps": r.fps if r.fps is not None else "–",
            "defects": f"{100 * r.defect_rate:.1f}%" if r.defect_rate is not None else "–",
            "alerts": r.open_alerts if r.open_alerts is not None else "–",
            "backlog": r.backlog if r.backlog is not None else "–",
            "problems": "; ".join(r.problems)[:80] if r.problems else "",
        })
    return out


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago" if seconds < 7200 else f"{seconds / 3600:.1f} h ago"


def _status(args: argparse.Namespace) -> int:
    watch = _watch(args)
    try:
        watch.settle(args.wait)
        view = watch.view(args.stale_minutes)
    finally:
        watch.stop()
    if args.json:
        json.dump(view.to_json(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    where = f"{view.prefix}/{args.site or '+'}/{args.line or '+'}"
    if not view.rows:
        print(f"no devices under {where}/ (wrong --prefix/--site, or no device ever connected to this broker)",
              file=sys.stderr)
        return 1
    print_table(table_rows(view), COLUMNS, floatfmt="{:.1f}")
    s = view.summary()
    bad = {k: v for k, v in view.counters.items() if k not in ("messages",) and v}
    print(f"\n{s['devices']} device(s) under {where}/: {s['online']} online, {s['stale']} stale "
          f"(no state for {args.stale_minutes:g} min), {s['offline']} offline, {s['unknown']} without status; "
          f"{s['with_alerts']} with open alerts"
          + (f"; rejected or odd payloads: {', '.join(f'{k} {v}' for k, v in bad.items())}" if bad else ""))
    return 0


class _Stopped(Exception):
    """SIGTERM: leave serve() the way Ctrl-C does."""


def _stop(_signum: int, _frame: Any) -> None:
    raise _Stopped


def _serve(args: argparse.Namespace) -> int:
    from smartstock.fleet.server import FleetServer

    if not 0 <= args.http_port <= 65535:
        raise ConfigError(f"--http-port {args.http_port}: not a port", hint="0-65535 (0 picks a free one)")
    watch = _watch(args)
    try:
        watch.settle(5.0)  # the first page load already shows the retained rows
        server = FleetServer(watch, args.http_host, args.http_port, stale_minutes=args.stale_minutes)
        signal.signal(signal.SIGTERM, _stop)
        print(f"fleet page on http://{server.host}:{server.port}/ (JSON: /api/fleet); Ctrl-C to stop", flush=True)
        try:
            server.serve()
        except (_Stopped, KeyboardInterrupt):
            pass
        finally:
            server.close()
    finally:
        watch.stop()
    return 0
