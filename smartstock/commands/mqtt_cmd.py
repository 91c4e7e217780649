"""`smartstock mqtt tail|pub-sale|cmd`: a technician's view of what a device publishes, and a way to poke it.

`tail` prints every message under the device's base topic as it arrives (retained ones first,
marked `R`). `pub-sale` sends one sales record and prints the device's answer; `cmd` sends a
command (`ping`, `snapshot`, `sync-now`, ...) and prints the response. All take `--url
mqtt[s]://[user[:password]@]host[:port]` or use the [mqtt] section of the config.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import queue
import sys
import time
import uuid
from typing import Any

from pydantic import ValidationError

from smartstock.commands._common import add_config_option, load
from smartstock.errors import BrokerUnavailable, ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mqtt", help="watch a device's MQTT topics, send it sales or commands")
    msub = p.add_subparsers(dest="mqtt_command", metavar="ACTION", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        add_config_option(q)
        q.add_argument("--url", default=None, help="broker as mqtt://[user:pass@]host:port or mqtts://... "
                                                   "(default: the config's [mqtt] host/port/tls)")
        q.add_argument("--device-id", default=None, help="device to address (default: the config's device.device_id)")
        q.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for the broker")

    tail = msub.add_parser("tail", help="print the device's topics live (retained first, marked R)")
    common(tail)
    tail.add_argument("--topic", action="append", default=None,
                      help="topic filter to watch (repeatable; default: the device's base topic/#)")
    tail.add_argument("--discovery", action="store_true", help="also show Home Assistant discovery configs")
    tail.add_argument("--count", type=int, default=0, help="exit after this many messages (0 = run until Ctrl-C)")
    tail.add_argument("--timeout", type=float, default=0.0, help="exit after this many seconds (0 = never)")
    tail.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    tail.set_defaults(func=run_tail)

    sale = msub.add_parser("pub-sale", help="send one sales record to the device and print its answer")
    common(sale)
    sale.add_argument("--sku", required=True)
    sale.add_argument("--quantity", type=float, required=True)
    sale.add_argument("--date", default=None, help="YYYY-MM-DD (default: today)")
    sale.add_argument("--price", type=float, default=None)
    sale.add_argument("--id", default=None, help="sale id, unique per sale (default: a new uuid)")
    sale.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the answer")
    sale.set_defaults(func=run_pub_sale)

    cmd = msub.add_parser("cmd", help="send a command (ping, snapshot, sync-now, rebirth, set-threshold)")
    common(cmd)
    cmd.add_argument("name", help="command name")
    cmd.add_argument("--args", default="{}", help='JSON object of arguments, e.g. \'{"label": "defect", "threshold": 0.7}\'')
    cmd.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the response")
    cmd.set_defaults(func=run_cmd)

    from smartstock.commands.broker_cmd import add_parsers  # acl, bridge: files for the broker, no connection

    add_parsers(msub)


def _connect(args: argparse.Namespace, purpose: str):
    """An MqttClient (no will, no status messages) addressing the device; `_start` connects it.
    stdout carries the messages (pipe it into jq, grep); log lines go to stderr (smartstock.logs)."""
    from smartstock.sync.client import MqttClient, config_from_url
    from smartstock.sync.topics import Topics

    config = load(args)
    mqtt_cfg, password = config.mqtt, None
    if args.url:
        mqtt_cfg, password = config_from_url(mqtt_cfg, args.url)
    device = config.device
    if args.device_id:
        try:
            device = type(device).model_validate({**device.model_dump(), "device_id": args.device_id})
        except ValidationError:
            raise ConfigError(f"--device-id {args.device_id!r}: 1-64 letters, digits, - or _") from None
    topics = Topics.from_config(mqtt_cfg, device)
    client = MqttClient(mqtt_cfg, topics, client_id=f"smartstock-{purpose}-{os.getpid()}", password=password,
                        will=False)
    return client, topics


def _start(client, timeout: float) -> None:
    client.start()
    if not client.wait_subscribed(timeout):
        err = client.last_error or "no answer"
        client.stop()
        raise BrokerUnavailable(f"cannot reach the MQTT broker {client.cfg.host}:{client.cfg.port} within "
                                f"{timeout:.0f} s: {err}",
                                hint="check --url (mqtts:// for TLS), the credentials and that the broker runs")


def _decode(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return payload.decode("utf-8", "replace")


def run_tail(args: argparse.Namespace) -> int:
    client, topics = _connect(args, "tail")
    filters = args.topic or [f"{topics.base}/#"]
    if args.discovery:
        from smartstock.sync.discovery import node_id

        filters.append(f"{load(args).mqtt.ha_prefix}/+/{node_id(topics.device_id)}/#")
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    for f in filters:
        client.subscribe(f, inbox.put, qos=1, retain_as_published=False)
    _start(client, args.connect_timeout)
    print(f"# watching {', '.join(filters)} on {client.cfg.host}:{client.cfg.port} (Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    seen, deadline = 0, time.monotonic() + args.timeout if args.timeout else None
    try:
        while not args.count or seen < args.count:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            try:
                msg = inbox.get(timeout=0.5 if left is None else min(0.5, left))
            except queue.Empty:
                continue
            seen += 1
            now = dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
            if args.json:
                print(json.dumps({"time": now, "topic": msg.topic, "retained": msg.retain,
                                  "payload": _decode(msg.payload)}), flush=True)
            else:
                text = msg.payload.decode("utf-8", "replace")
                print(f"{now} {'R' if msg.retain else ' '} {msg.topic}  {text[:2000]}", flush=True)
    finally:
        client.stop()
    return 0


def _request(args: argparse.Namespace, topic_of, body: dict[str, Any], response_name: str, match) -> int:
    client, topics = _connect(args, "req")
    answers: queue.SimpleQueue = queue.SimpleQueue()
    client.subscribe(topics.response(response_name), answers.put)
    refused: set[int] = set()  # MQTT 5: the broker's ACL refused the publish (3.1.1 drops it silently)
    client.on_ack = lambda mid, ok, _retryable: None if ok else refused.add(mid)
    _start(client, args.connect_timeout)
    try:
        topic = topic_of(topics)
        mid = client.publish(topic, json.dumps(body).encode(), qos=1)
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            if mid in refused:
                raise BrokerUnavailable(f"the broker refused to publish {topic} for this user",
                                        hint="commands and sales need an account the broker's ACL lets write there "
                                             "(smartstock mqtt acl --technician USER)")
            try:
                msg = answers.get(timeout=min(0.2, max(0.05, deadline - time.monotonic())))
            except queue.Empty:
                continue
            reply = _decode(msg.payload)
            if isinstance(reply, dict) and match(reply):
                print(json.dumps(reply, indent=2))
                return 0 if reply.get("ok") else 3
    finally:
        client.stop()
    raise BrokerUnavailable(f"no answer from device {topics.device_id} within {args.wait:.0f} s",
                            hint="is the device online (smartstock mqtt tail) and is --device-id right?")


def run_pub_sale(args: argparse.Namespace) -> int:
    sale_id = args.id or uuid.uuid4().hex
    record: dict[str, Any] = {"id": sale_id, "sku": args.sku, "date": args.date or dt.date.today().isoformat(),
                              "quantity": args.quantity}
    if args.price is not None:
        record["price"] = args.price
    sales_topic = load(args).mqtt.sales_topic
    return _request(args, lambda t: sales_topic or t.sales_in, record, "sales",
                    lambda r: r.get("request_id") == sale_id)


def run_cmd(args: argparse.Namespace) -> int:
    try:
        cmd_args = json.loads(args.args)
    except ValueError as e:
        raise ConfigError(f"--args is not valid JSON: {e}", hint='e.g. --args \'{"label": "defect", "threshold": 0.7}\'') from None
    rid = uuid.uuid4().hex[:12]
    return _request(args, lambda t: t.cmd(args.name), {"request_id": rid, "args": cmd_args}, args.name,
                    lambda r: r.get("request_id") == rid)
