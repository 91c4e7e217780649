"""A subscription to every device's retained topics: `collect()` for one look, `FleetWatch` to keep it live.

The broker hands a new subscriber the retained message of every matching topic right after it
acknowledges the subscription, so one look is: subscribe, wait until no retained message has
arrived for `quiet_s` (or `wait_s` passed), build the rows. The watch keeps only the latest
message per topic (at most `MAX_PAYLOAD_BYTES + 1` bytes of it, and `MAX_TOTAL_BYTES` in all), so its
memory is bounded whatever the devices send.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

from smartstock.config import MqttConfig
from smartstock.errors import BrokerUnavailable
from smartstock.fleet.rows import MAX_DEVICES, MAX_PAYLOAD_BYTES, SUFFIXES, FleetView, build_rows, topic_filters
from smartstock.sync.client import InboundMessage, MqttClient, config_from_url
from smartstock.sync.topics import Topics

logger = logging.getLogger(__name__)

MAX_TOPICS = MAX_DEVICES * len(SUFFIXES)
#: all kept payloads together: a real device's retained topics are a few KB, so 10,000 devices fit many
#: times; a flood of maximal payloads (an open broker) is refused past it instead of growing the process
MAX_TOTAL_BYTES = 256 * 1024 * 1024


class FleetClient(Protocol):
    """The part of `smartstock.sync.client.MqttClient` the watch uses (a factory may return another)."""

    last_error: str | None

    def subscribe(self, topic_filter: str, handler: Callable[[InboundMessage], None], qos: int = 1) -> None: ...
    def start(self) -> None: ...
    def wait_subscribed(self, timeout: float) -> bool: ...
    @property
    def connected(self) -> bool: ...
    def stop(self, timeout: float = 3.0) -> None: ...


ClientFactory = Callable[[MqttConfig, "str | None", str], FleetClient]  # (mqtt config, password, client id)


def mqtt_client(cfg: MqttConfig, password: str | None, client_id: str) -> FleetClient:
    """The default factory: the product's own MQTT client, without a will (a viewer has no status)."""
    topics = Topics(cfg.prefix.strip("/"), "fleet", "fleet", "fleet")  # only used for a will, and there is none
    return MqttClient(cfg, topics, client_id=client_id, password=password, will=False,
                      max_packet_bytes=MAX_PAYLOAD_BYTES + 4096)


class FleetWatch:
    """Latest retained message of every device topic under `prefix` (and `site`/`line` if given)."""

    def __init__(self, mqtt: MqttConfig, *, prefix: str | None = None, site: str | None = None,
                 line: str | None = None, password: str | None = None,
                 client_factory: ClientFactory | None = None, client_id: str | None = None) -> None:
        self.prefix = (prefix or mqtt.prefix).strip("/")
        self.site, self.line = site, line
        self.where = f"{mqtt.host}:{mqtt.port}"
        self._lock = threading.Lock()
        self._latest: dict[str, InboundMessage] = {}
        self._extra = 0  # messages refused: new topics beyond MAX_TOPICS, or past MAX_TOTAL_BYTES
        self._bytes = 0  # payload bytes kept in _latest
        self._received = 0
        self._last_retained = time.monotonic()
        factory = client_factory or mqtt_client
        self.client = factory(mqtt, password, client_id or f"smartstock-fleet-{os.getpid()}-{time.monotonic_ns() % 10**6}")
        for f in topic_filters(self.prefix, site, line):
            self.client.subscribe(f, self._on_message, 1)

    def _on_message(self, msg: InboundMessage) -> None:
        if len(msg.payload) > MAX_PAYLOAD_BYTES:  # keep enough to tell it was too big, not the whole of it
            msg = InboundMessage(msg.topic, msg.payload[:MAX_PAYLOAD_BYTES + 1], msg.retain)
        with self._lock:
            self._received += 1
            if msg.retain:
                self._last_retained = time.monotonic()
            old = self._latest.get(msg.topic)
            grown = self._bytes + len(msg.payload) - (len(old.payload) if old else 0)
            if (old is not None or len(self._latest) < MAX_TOPICS) and grown <= MAX_TOTAL_BYTES:
                self._latest[msg.topic] = msg
                self._bytes = grown
            else:
                self._extra += 1

    def start(self, timeout: float = 10.0) -> "FleetWatch":
        """Connect and subscribe; BrokerUnavailable when that does not happen within `timeout` s."""
        self.client.start()
        if not self.client.wait_subscribed(timeout):
            err = self.client.last_error or "no answer"
            self.client.stop()
            raise BrokerUnavailable(f"cannot reach the MQTT broker {self.where} within {timeout:g} s: {err}",
                                    hint="check --url (mqtts:// for TLS), the credentials and that the broker runs")
        self._last_retained = time.monotonic()
        return self

    def settle(self, wait_s: float, quiet_s: float = 0.5) -> None:
        """Wait until the retained burst is over: no retained message for `quiet_s`, at most `wait_s`."""
        deadline = time.monotonic() + wait_s
        while True:
            now = time.monotonic()
            with self._lock:
                quiet_until = self._last_retained + quiet_s
            if now >= deadline or now >= quiet_until:
                return
            time.sleep(min(deadline, quiet_until) - now)

    def view(self, stale_minutes: float = 10.0, now: dt.datetime | None = None) -> FleetView:
        with self._lock:
            messages = list(self._latest.values())
            extra = self._extra
        view = build_rows(messages, prefix=self.prefix, stale_minutes=stale_minutes, now=now, site=self.site)
        view.counters["dropped_devices"] += extra
        view.broker_connected = self.client.connected
        return view

    def stop(self) -> None:
        self.client.stop()


def collect(broker: str | MqttConfig = "mqtt://127.0.0.1:1883", prefix: str = "smartstock", site: str | None = None,
            wait_s: float = 5.0, *, line: str | None = None, password: str | None = None,
            stale_minutes: float = 10.0, connect_timeout_s: float = 10.0, quiet_s: float = 0.5,
            client_factory: ClientFactory | None = None) -> FleetView:
    """One look at the fleet: every device under `prefix` (optionally one `site`/`line`).

    `broker` is a URL (`mqtt[s]://[user[:password]@]host[:port]`) or an MqttConfig (with TLS, client
    certificates). Returns after the retained messages stopped arriving (`quiet_s`) or `wait_s`.
    Raises BrokerUnavailable (exit 8) when the broker cannot be reached within `connect_timeout_s`."""
    if isinstance(broker, str):
        cfg, url_password = config_from_url(MqttConfig(), broker, option="broker")
        password = password if password is not None else url_password
    else:
        cfg = broker
    watch = FleetWatch(cfg, prefix=prefix, site=site, line=line, password=password, client_factory=client_factory)
    watch.start(connect_timeout_s)
    try:
        watch.settle(wait_s, quiet_s)
        return watch.view(stale_minutes)
    finally:
        watch.stop()
