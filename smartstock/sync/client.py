"""The device's MQTT connection on paho-mqtt 2.x: availability, TLS, credentials, backoff, subscriptions.

What it guarantees:
- a last will `offline` (retained) on `{base}/status` and a retained `online` on every connect;
  `stop()` publishes `offline` itself, since a clean disconnect does not fire the will;
- with `mqtt.tls` set every connection is TLS (CA file, optional client certificate); there is no
  plaintext fallback;
- the password comes from `MqttConfig.password()` (environment or file) and is never logged;
- paho's own thread reconnects with exponential backoff (`reconnect_min_s` .. `reconnect_max_s`);
  QoS 1 messages paho accepted are re-sent by paho after a reconnect;
- `subscribe(filter, handler)` is re-applied on every connect (OTA, commands and sales use it).
Nothing here writes the store: the outbox worker decides what is published.
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smartstock.config import MqttConfig, TlsConfig
from smartstock.errors import BackendUnavailable, ConfigError
from smartstock.sync.topics import Topics

logger = logging.getLogger(__name__)

MAX_PACKET_LIMIT = 268_435_455  # the largest packet MQTT can describe
STATUS_ONLINE = b"online"
STATUS_OFFLINE = b"offline"


@dataclass(frozen=True)
class InboundMessage:
    """One received message, independent of paho (so inbound handling is testable without a broker)."""

    topic: str
    payload: bytes
    retain: bool = False
    response_topic: str | None = None
    correlation_data: bytes | None = None


Handler = Callable[[InboundMessage], None]
AckCallback = Callable[[int, bool, bool], None]  # (mid, ok, retryable)


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError as e:  # pragma: no cover - the edge extra installs it
        raise BackendUnavailable("paho-mqtt is not installed", hint="pip install 'smartstock[edge]'") from e
    return mqtt


def config_from_url(cfg: MqttConfig, url: str, *, option: str = "--url") -> tuple[MqttConfig, str | None]:
    """Apply `mqtt[s]://[user[:password]@]host[:port]` to a copy of `cfg`; returns (config, password).

    `mqtt://` while the config has TLS is refused: that would send credentials in plaintext."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(f"{option} {url!r}: scheme must be mqtt:// or mqtts://",
                          hint="e.g. mqtt://broker.local:1883 or mqtts://broker.local:8883")
    tls = parts.scheme in ("mqtts", "ssl")
    if not tls and cfg.tls is not None:
        raise ConfigError(f"{option} {url!r} is plaintext but mqtt.tls is configured",
                          hint="use mqtts:// (TLS) or remove [mqtt.tls] from the config")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{option} {url!r}: the port is not a number 1-65535") from None
    if not parts.hostname:
        raise ConfigError(f"{option} {url!r}: no host name", hint="e.g. mqtt://127.0.0.1:1883")
    update: dict[str, Any] = {"host": parts.hostname, "port": port or (8883 if tls else 1883)}
    if tls and cfg.tls is None:
        update["tls"] = TlsConfig()
    if parts.username:
        update["username"] = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password) if parts.password else None
    return cfg.model_copy(update=update), password


class MqttClient:
    """One broker connection. Build it, register subscriptions and callbacks, then `start()`."""

    def __init__(self, cfg: MqttConfig, topics: Topics, *, client_id: str | None = None,
                 password: str | None = None, will: bool = True, max_packet_bytes: int | None = None) -> None:
        mqtt = _paho()
        self.max_packet_bytes = max_packet_bytes
        self.cfg = cfg
        self.topics = topics
        self.client_id = client_id or cfg.client_id or f"smartstock-{topics.device_id}"
        self._v5 = cfg.protocol == "5"
        self._mqtt = mqtt
        self._connected = threading.Event()
        self._subs: dict[str, Any] = {}  # filter -> qos (3.1.1) or SubscribeOptions (5)
        self._sub_lock = threading.Lock()
        self._subscribed = threading.Event()  # the connect-time SUBSCRIBE was acknowledged
        self._connect_sub_mid: int | None = None
        self._connect_listeners: list[Callable[[], None]] = []
        self._disconnect_listeners: list[Callable[[], None]] = []
        self.on_ack: AckCallback | None = None
        self.last_error: str | None = None
        self._state_logged: str | None = None
        self.connects = 0
        self._will = will
        self._stopping = False

        kwargs: dict[str, Any] = {"callback_api_version": mqtt.CallbackAPIVersion.VERSION2,
                                  "client_id": self.client_id, "protocol": mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311}
        if not self._v5:
            kwargs["clean_session"] = True
        self._client = mqtt.Client(**kwargs)
        self._client.max_inflight_messages_set(cfg.inflight)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        if will:
            self._client.will_set(topics.status, STATUS_OFFLINE, qos=1, retain=True)
        self._setup_auth(password)
        if cfg.tls is not None:
            self._setup_tls(cfg.tls)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_subscribe = self._on_subscribe
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_unmatched

    # -- set-up -------------------------------------------------------------------------------
    def _setup_auth(self, password: str | None) -> None:
        password = password if password is not None else self.cfg.password()
        if self.cfg.username:
            self._client.username_pw_set(self.cfg.username, password)
            if self.cfg.tls is None and self.cfg.host not in ("localhost", "127.0.0.1", "::1"):
                logger.warning("mqtt: user %s authenticates to %s without TLS; set [mqtt.tls] so the password "
                               "is not sent in plaintext", self.cfg.username, self.cfg.host)
        elif password:
            logger.warning("mqtt: a password is set but no mqtt.username; the password is not used")

    def _setup_tls(self, tls: TlsConfig) -> None:
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, key)
            if path is not None and not path.is_file():
                raise ConfigError(f"mqtt.tls.{key}: {path} does not exist or is not a file",
                                  hint="give the PEM file's full path, readable by the service user")
        if (tls.cert_file is None) != (tls.key_file is None):
            raise ConfigError("mqtt.tls: cert_file and key_file must be given together",
                              hint="set both for mutual TLS, or neither")
        try:
            self._client.tls_set(ca_certs=str(tls.ca_file) if tls.ca_file else None,
                                 certfile=str(tls.cert_file) if tls.cert_file else None,
                                 keyfile=str(tls.key_file) if tls.key_file else None,
                                 cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        except (ssl.SSLError, OSError, ValueError) as e:
            raise ConfigError(f"mqtt.tls: cannot load the certificates: {e}",
                              hint="check that ca_file/cert_file/key_file are PEM and the key matches the certificate") from None
        if tls.insecure:
            logger.warning("mqtt.tls.insecure = true: the broker's host name is not verified (testing only)")
            self._client.tls_insecure_set(True)

    # -- public API ---------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """Connected and the broker acknowledged the subscriptions (commands sent now are heard)."""
        return self._connected.wait(timeout) and self._subscribed.wait(timeout)

    def add_connect_listener(self, fn: Callable[[], None]) -> None:
        """Called from paho's thread after every successful connect (keep it short)."""
        self._connect_listeners.append(fn)

    def add_disconnect_listener(self, fn: Callable[[], None]) -> None:
        self._disconnect_listeners.append(fn)

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1, *, retain_as_published: bool = False) -> None:
        """Deliver messages matching `topic_filter` to `handler` (from paho's thread); kept across reconnects.

        `retain_as_published` (MQTT 5) keeps the retain flag on live messages too, so a handler can
        tell a retained publication from a fresh one; on 3.1.1 only stale retained copies carry it."""
        opts: Any = qos
        if self._v5:
            from paho.mqtt.subscribeoptions import SubscribeOptions

            opts = SubscribeOptions(qos=qos, retainAsPublished=retain_as_published)

        def dispatch(_client: Any, _userdata: Any, msg: Any) -> None:
            self._dispatch(handler, msg)

        self._client.message_callback_add(topic_filter, dispatch)  # outside _sub_lock: it takes paho's lock
        with self._sub_lock:  # against a connect happening right now: subscribed there or here, never lost
            self._subs[topic_filter] = opts
            if self.connected:  # paho takes MQTT 5 SubscribeOptions only as the `options` keyword
                if self._v5:
                    self._client.subscribe(topic_filter, options=opts)
                else:
                    self._client.subscribe(topic_filter, opts)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                user_properties: list[tuple[str, str]] | None = None,
                correlation_data: bytes | None = None) -> int | None:
        """Hand one message to paho; returns its mid, or None when paho refused to queue it.

        A QoS 1 message handed over while disconnected stays queued in paho and goes out on reconnect.
        Raises ValueError for a topic or payload MQTT cannot carry."""
        props = None
        if self._v5 and (user_properties or correlation_data is not None):
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.PUBLISH)
            if user_properties:
                props.UserProperty = user_properties
            if correlation_data is not None:
                props.CorrelationData = correlation_data
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc not in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN):
            return None
        return int(info.mid)

    def start(self) -> None:
        """Connect in the background; paho's thread keeps reconnecting until `stop()`."""
        kw: dict[str, Any] = {"keepalive": self.cfg.keepalive_s}
        if self._v5:
            kw["clean_start"] = True
            if self.max_packet_bytes:  # the broker drops larger messages for us: they never cost memory here
                from paho.mqtt.packettypes import PacketTypes
                from paho.mqtt.properties import Properties

                props = Properties(PacketTypes.CONNECT)
                props.MaximumPacketSize = min(self.max_packet_bytes, MAX_PACKET_LIMIT)
                kw["properties"] = props
        elif self.max_packet_bytes:
            logger.info("mqtt: MQTT 3.1.1 cannot ask the broker for a packet size limit; messages over %d KB are "
                        "read, then refused (set the broker's max_packet_size, or use protocol = \"5\")",
                        self.max_packet_bytes // 1024)
        self._client.connect_async(self.cfg.host, self.cfg.port, **kw)
        self._client.loop_start()
        logger.info("mqtt: connecting to %s:%d as %s (MQTT %s%s)", self.cfg.host, self.cfg.port, self.client_id,
                    self.cfg.protocol, ", TLS" if self.cfg.tls else "")

    def stop(self, timeout: float = 3.0) -> None:
        """Publish `offline` (a clean disconnect does not fire the will), disconnect, stop the thread."""
        if self.connected and self._will:
            info = self._client.publish(self.topics.status, STATUS_OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    # -- paho callbacks (paho's thread) ---------------------------------------------------------
    def _log_state(self, state: str, level: int, msg: str, *args: Any) -> None:
        """Log once per state change, not once per reconnect attempt."""
        if state != self._state_logged:
            self._state_logged = state
            logger.log(level, msg, *args)

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            self._log_state(f"refused:{reason_code}", logging.ERROR,
                            "mqtt: %s:%d refused the connection: %s (check mqtt.username and the password "
                            "in $%s or mqtt.password_file)", self.cfg.host, self.cfg.port, reason_code,
                            self.cfg.password_env)
            return
        self.connects += 1
        self.last_error = None
        self._log_state("connected", logging.INFO, "mqtt: connected to %s:%d", self.cfg.host, self.cfg.port)
        if self._will:
            client.publish(self.topics.status, STATUS_ONLINE, qos=1, retain=True)
        with self._sub_lock:
            if self._subs:
                _rc, self._connect_sub_mid = client.subscribe(list(self._subs.items()))
            else:
                self._subscribed.set()
            self._connected.set()
        for fn in self._connect_listeners:
            try:
                fn()
            except Exception:  # a listener bug must not kill paho's network thread
                logger.exception("mqtt: connect listener failed")

    def _on_subscribe(self, _client: Any, _userdata: Any, mid: int, reason_codes: Any, _props: Any) -> None:
        if mid == self._connect_sub_mid:
            refused = [str(rc) for rc in reason_codes if getattr(rc, "is_failure", False)]
            if refused:
                logger.error("mqtt: the broker refused %d subscription(s): %s (check the broker's ACL)",
                             len(refused), ", ".join(refused))
            self._subscribed.set()

    def _on_connect_fail(self, _client: Any, _userdata: Any) -> None:
        exc = sys.exc_info()[1]  # paho calls this from inside its `except OSError`
        if isinstance(exc, ssl.SSLError) or isinstance(exc, ssl.CertificateError):
            hint = "TLS handshake failed; check mqtt.tls.ca_file is the CA of the broker's certificate, the host " \
                   "name, the client certificate, and that the port is the broker's TLS listener"
        else:
            hint = "check mqtt.host/mqtt.port and that the broker is running"
        self.last_error = f"cannot connect to {self.cfg.host}:{self.cfg.port}: {type(exc).__name__}: {exc}"
        self._log_state(f"fail:{type(exc).__name__}", logging.ERROR, "mqtt: %s (%s); retrying with backoff",
                        self.last_error, hint)

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        if not was:  # the end of a refused or failed attempt: already logged by the connect callbacks
            return
        if reason_code is not None and getattr(reason_code, "is_failure", False):
            self.last_error = f"disconnected: {reason_code}"
        if self._stopping:
            logger.info("mqtt: disconnected from %s:%d", self.cfg.host, self.cfg.port)
        else:
            self._log_state("disconnected", logging.WARNING, "mqtt: disconnected from %s:%d (%s); reconnecting "
                            "with backoff", self.cfg.host, self.cfg.port, reason_code)
        for fn in self._disconnect_listeners:
            try:
                fn()
            except Exception:
                logger.exception("mqtt: disconnect listener failed")

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, reason_code: Any, _props: Any) -> None:
        if self.on_ack is None:
            return
        value = getattr(reason_code, "value", 0)
        ok = value < 0x80
        retryable = value in (0x80, 0x97)  # unspecified error, quota exceeded: worth sending again
        self.on_ack(mid, ok, retryable)

    def _on_unmatched(self, _client: Any, _userdata: Any, msg: Any) -> None:
        logger.debug("mqtt: message on %s matches no handler", msg.topic)

    def _dispatch(self, handler: Handler, msg: Any) -> None:
        props = getattr(msg, "properties", None)
        message = InboundMessage(topic=msg.topic, payload=bytes(msg.payload), retain=bool(msg.retain),
                                 response_topic=getattr(props, "ResponseTopic", None) if props else None,
                                 correlation_data=getattr(props, "CorrelationData", None) if props else None)
        try:
            handler(message)
        except Exception:  # never let a handler bug kill paho's network thread
            logger.exception("mqtt: handler for %s failed", msg.topic)
