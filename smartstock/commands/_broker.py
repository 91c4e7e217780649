"""Broker options shared by the technician's MQTT tools (`ota push|status|rollout`, `fleet status|serve`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from smartstock.commands._common import add_config_option, load
from smartstock.config import LEVEL, Config, MqttConfig, TlsConfig
from smartstock.errors import ConfigError
from smartstock.ota.link import BrokerConn


def add_broker_options(p: argparse.ArgumentParser, *, site_help: str = "site topic level (default: the config's "
                       "device.site)", line_help: str = "line topic level (default: the config's device.line)") -> None:
    add_config_option(p)
    p.add_argument("--url", default=None, help="broker, mqtt://[user:pass@]host:port or mqtts://... "
                   "(default: the config's mqtt.host/port)")
    p.add_argument("--ca-file", type=Path, default=None, help="CA certificate for mqtts://")
    p.add_argument("--site", default=None, help=site_help)
    p.add_argument("--line", default=None, help=line_help)
    p.add_argument("--prefix", default=None, help="topic prefix (default: the config's mqtt.prefix)")


def check_topic_options(args: argparse.Namespace) -> None:
    for opt in ("site", "line"):
        value = getattr(args, opt, None)
        if value is not None and not LEVEL.match(value):
            raise ConfigError(f"--{opt} {value!r} is not a topic level", hint="1-64 letters, digits, '_' or '-'")
    prefix = getattr(args, "prefix", None)
    if prefix is not None and not all(LEVEL.match(p) for p in prefix.strip("/").split("/")):
        raise ConfigError(f"--prefix {prefix!r} is not a topic prefix",
                          hint="levels of 1-64 letters, digits, '_' or '-', separated by '/' (no wildcards)")


def broker_config(args: argparse.Namespace) -> tuple[MqttConfig, str | None, Config]:
    """(mqtt config with --url and --ca-file applied, the URL's password or None, the whole config).
    --site/--line/--prefix are checked first: no wildcard or odd level reaches a subscription or a topic."""
    check_topic_options(args)
    cfg = load(args)
    from smartstock.sync.client import config_from_url  # the one MQTT URL parser

    m, password = config_from_url(cfg.mqtt, args.url) if args.url else (cfg.mqtt, None)
    if getattr(args, "ca_file", None) is not None:
        if m.tls is None:
            raise ConfigError("--ca-file is for a TLS broker", hint="use an mqtts:// --url, or drop --ca-file")
        m = m.model_copy(update={"tls": (m.tls or TlsConfig()).model_copy(update={"ca_file": args.ca_file})})
    return m, password, cfg


def broker_conn(args: argparse.Namespace) -> tuple[BrokerConn, Config]:
    """(BrokerConn, Config) from --config/--url/--ca-file: the options every broker-facing ota action takes."""
    m, password, cfg = broker_config(args)
    tls = m.tls

    def path(p: Path | None) -> str | None:
        return str(p) if p else None

    conn = BrokerConn(host=m.host, port=m.port, tls=tls is not None, username=m.username,
                      password=password if password is not None else m.password(),
                      ca_file=path(tls.ca_file) if tls else None, cert_file=path(tls.cert_file) if tls else None,
                      key_file=path(tls.key_file) if tls else None)
    return conn, cfg
