"""The technician's MQTT link: connect, publish a release under a base, read devices' retained topics.

Connections and publishes wait for the broker's acknowledgement (smartstock.sync.acked): under a fleet
ACL a refused release is an error naming the broker's reason, not a silent drop.

`ota push`, `ota status` and `ota rollout` share it. What comes back from the broker is hostile input:
every payload is size-capped before it is parsed, anything that is not a JSON object is dropped, and
the queue the paho thread fills is bounded (the oldest message goes when it is full, counted).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smartstock.errors import BackendUnavailable, BrokerUnavailable
from smartstock.ota import addressing
from smartstock.sync.acked import connect_acked, publish_acked

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 256 * 1024  # a device's retained state is about 1 KB; 256 KiB is the device's own inbound cap
MAX_QUEUED = 20_000             # messages waiting for the reader; 200 devices x 3 retained topics fit many times


@dataclass(frozen=True)
class BrokerConn:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None  # client certificate and key, for brokers that require one (mutual TLS)
    key_file: str | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def connect(conn: BrokerConn, *, name: str = "smartstock-ota") -> Any:
    """A started paho client (MQTT 5, so a refused CONNECT or PUBLISH says why; its network loop on its own
    thread), connected. BrokerUnavailable (exit 8) when the broker cannot be reached or refuses us."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError as e:
        raise BackendUnavailable("paho-mqtt is not installed", hint="pip install 'smartstock[edge]'") from e
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{int(time.time() * 1000) % 10**9}",
                         protocol=mqtt.MQTTv5)
    if conn.username:
        client.username_pw_set(conn.username, conn.password)
    if conn.tls:
        client.tls_set(ca_certs=conn.ca_file, certfile=conn.cert_file, keyfile=conn.key_file)
    try:
        connect_acked(client, conn.host, conn.port)
    except (OSError, ValueError) as e:
        raise BrokerUnavailable(f"cannot reach the MQTT broker {conn.where}: {e}",
                                hint="check --url (mqtts:// for TLS) and that the broker is running") from None
    return client


def close(client: Any) -> None:
    client.loop_stop()
    client.disconnect()


def publish_release(client: Any, base: str, envelope: bytes, artifact: bytes | None, sha256: str) -> None:
    """Artifact first (the device asks for it as soon as the envelope arrives), then the envelope; both retained."""
    if artifact is not None:
        publish_acked(client, addressing.artifact(base, sha256), artifact, retain=True, timeout=60)
    publish_acked(client, addressing.desired(base), envelope, retain=True)


def withdraw_release(client: Any, base: str, sha256: str) -> None:
    """Clear the retained envelope and artifact under `base` (an empty retained message deletes one), so a
    device that was offline does not install the release when it comes back. Devices ignore empty ones."""
    publish_acked(client, addressing.desired(base), b"", retain=True)
    publish_acked(client, addressing.artifact(base, sha256), b"", retain=True)


@dataclass(frozen=True)
class Message:
    topic: str
    retained: bool
    payload: dict[str, Any] | str  # a JSON object, or the text of a plain-text topic (`status`)


class Feed:
    """Messages on some topic filters as they arrive (retained ones first), parsed and bounded.

    `compact(topic, payload)` may cut a parsed payload down to what the reader uses, on paho's thread,
    so what waits in the queue stays small whatever the broker sends."""

    def __init__(self, client: Any, filters: list[str], *, text_suffixes: tuple[str, ...] = ("/status",),
                 compact: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.filters = list(filters)
        self.items: queue.Queue[Message] = queue.Queue(maxsize=MAX_QUEUED)
        self.dropped = 0
        self.text_suffixes = text_suffixes
        self.compact = compact
        self._subscribed = threading.Event()
        self._lock = threading.Lock()  # the SUBACK may come back before subscribe() has returned its id
        client.on_message = self._on
        client.on_subscribe = self._on_subscribe
        with self._lock:
            self._mid = client.subscribe([(f, 1) for f in self.filters])[1]

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def _on_subscribe(self, _client: Any, _userdata: Any, mid: int, *_rest: Any) -> None:
        with self._lock:
            if mid == self._mid:
                self._subscribed.set()

    def _on(self, _client: Any, _userdata: Any, msg: Any) -> None:
        raw = bytes(msg.payload)
        if not raw or len(raw) > MAX_PAYLOAD_BYTES:
            return  # a cleared retained topic, or junk over the cap
        if msg.topic.endswith(self.text_suffixes):
            payload: dict[str, Any] | str = raw[:64].decode("utf-8", "replace").strip()
        else:
            try:
                payload = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                return
            if not isinstance(payload, dict):
                return
            if self.compact is not None:
                payload = self.compact(msg.topic, payload)
        item = Message(msg.topic, bool(msg.retain), payload)
        try:
            self.items.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            try:
                self.items.get_nowait()
                self.items.put_nowait(item)
            except (queue.Empty, queue.Full):
                pass

    def next(self, timeout: float) -> Message | None:
        try:
            return self.items.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None

    def retained(self, timeout: float, quiet: float = 0.5) -> list[Message]:
        """Every retained message the broker sends on subscribing: read until `quiet` seconds pass with none
        after the subscription is acknowledged (MQTT has no end-of-retained marker), at most `timeout`.
        Live messages read meanwhile are kept too, so none is lost."""
        deadline = time.monotonic() + timeout
        got: list[Message] = []
        while time.monotonic() < deadline:
            m = self.next(min(quiet, deadline - time.monotonic()))
            if m is None:
                if self.subscribed:
                    break
                continue
            got.append(m)
        return got
