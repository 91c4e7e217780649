"""`smartstock mqtt acl|bridge`: the mosquitto files of a fleet, written from the device's own topic tree.

`acl` prints an `acl_file` for the given devices and people (README "Running a fleet", Access per
device); `bridge` prints a site broker's bridge up to the plant broker. Neither touches a broker, and
neither takes a password: the bridge file says CHANGE-ME where the bridge password goes.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from smartstock.commands._common import add_config_option, load
from smartstock.errors import ConfigError, InputError


def add_parsers(msub: argparse._SubParsersAction) -> None:
    """The two actions under `smartstock mqtt`."""
    acl = msub.add_parser("acl", help="print a mosquitto ACL: each device writes only under its own topics")
    _common(acl)
    acl.add_argument("--device", action="append", default=[], metavar="ID", help="device id (repeatable)")
    acl.add_argument("--devices", type=Path, default=None, metavar="FILE",
                     help="file of device ids, one per line (# starts a comment)")
    acl.add_argument("--technician", action="append", default=[], metavar="USER",
                     help="may send commands, sales and OTA releases (repeatable)")
    acl.add_argument("--homeassistant", action="append", default=[], metavar="USER",
                     help="Home Assistant: reads, and presses the sync-now / rebirth buttons (repeatable)")
    acl.add_argument("--dashboard", action="append", default=[], metavar="USER", help="read only (repeatable)")
    acl.add_argument("--sales", action="append", default=[], metavar="USER",
                     help="an ERP that books sales on <base>/sales/in (repeatable)")
    acl.add_argument("--bridge", action="append", default=[], metavar="USER=SITE",
                     help="a site broker's bridge user on this (plant) broker, limited to SITE (repeatable)")
    acl.set_defaults(func=run_acl)

    br = msub.add_parser("bridge", help="print a site broker's bridge to the plant broker (mosquitto config)")
    _common(br)
    br.add_argument("--site", default=None, help="site name (default: the config's device.site)")
    br.add_argument("--plant", default="plant-broker.example:8883", metavar="HOST:PORT", help="plant broker address")
    br.add_argument("--remote-user", default=None,
                    help="the bridge's user on the plant broker (default: bridge-SITE; with --certfile the CN "
                         "of that certificate)")
    br.add_argument("--cafile", default="/etc/mosquitto/certs/plant-ca.crt",
                    help="CA of the plant broker's certificate; 'none' for plaintext (a lab only)")
    br.add_argument("--certfile", default=None, help="the bridge's client certificate (no password then)")
    br.add_argument("--keyfile", default=None, help="its key")
    br.add_argument("--persistence-dir", default="/var/lib/mosquitto/", help="where the site broker keeps its queue")
    br.add_argument("--max-queued", type=int, default=1_000_000, help="messages held for the plant during a cut")
    br.set_defaults(func=run_bridge)


def _common(p: argparse.ArgumentParser) -> None:
    add_config_option(p)
    p.add_argument("--prefix", default=None, help="topic prefix (default: the config's mqtt.prefix)")
    p.add_argument("--out", type=Path, default=None, help="write to this file (mode 0640) instead of stdout")


def _fleet(args: argparse.Namespace, **roles):
    from smartstock.sync.brokerconf import Fleet

    m = load(args).mqtt
    return Fleet(prefix=args.prefix or m.prefix, ha_prefix=m.ha_prefix, reply_prefix=m.reply_prefix, **roles)


def _emit(args: argparse.Namespace, text: str) -> int:
    if args.out is None:
        print(text, end="")
        return 0
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise ConfigError(f"--out {args.out}: cannot write: {e.strerror}") from None
    print(f"wrote {args.out}")
    return 0


def _device_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InputError(f"{path}: cannot read the device list: {e.strerror}") from None
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


def run_acl(args: argparse.Namespace) -> int:
    from smartstock.sync.brokerconf import acl_text

    devices = list(args.device) + (_device_list(args.devices) if args.devices else [])
    bridges: dict[str, str] = {}
    for item in args.bridge:
        user, sep, site = item.partition("=")
        if not sep or not user or not site:
            raise ConfigError(f"--bridge {item!r}: expected USER=SITE", hint="e.g. --bridge bridge-site1=site1")
        bridges[user] = site
    fleet = _fleet(args, devices=tuple(dict.fromkeys(devices)), technicians=tuple(args.technician),
                   homeassistant=tuple(args.homeassistant), dashboards=tuple(args.dashboard), sales=tuple(args.sales),
                   bridges=bridges)
    return _emit(args, acl_text(fleet))


def run_bridge(args: argparse.Namespace) -> int:
    from smartstock.sync.brokerconf import Bridge, bridge_text

    site = args.site or load(args).device.site
    if (args.certfile is None) != (args.keyfile is None):
        raise ConfigError("--certfile and --keyfile go together")
    if args.certfile and args.cafile == "none":
        raise ConfigError("--certfile needs TLS", hint="give --cafile with the plant broker's CA")
    bridge = Bridge(site=site, address=args.plant, remote_user=args.remote_user or f"bridge-{site}",
                    cafile=None if args.cafile == "none" else args.cafile, certfile=args.certfile,
                    keyfile=args.keyfile, persistence_dir=args.persistence_dir, max_queued=args.max_queued)
    return _emit(args, bridge_text(_fleet(args), bridge))
