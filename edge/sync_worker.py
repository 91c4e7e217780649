"""The MQTT sync service of the device: one connection, one worker thread draining the outbox.

`SyncService` wires the pieces of `smartstock.sync` together: the paho connection (availability,
TLS, credentials, backoff), the outbox drainer (QoS 1, bounded in-flight window, delete on PUBACK),
the cap policy, Home Assistant discovery, inbound sales and commands. Published directly, not via
the outbox, are only the messages that describe the connection itself and are regenerated on every
connect: `status` online/offline, discovery configs, the `{base}/sync` counters and command replies.
Everything else (events, state, inventory, alerts, model state) goes through the outbox.

`start_sync(...)` builds and starts it for the `start_sync` step of edge/app.py.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from edge.loop import Classifier
from smartstock.config import Config, DeviceConfig, MqttConfig
from smartstock.errors import InputError, SmartStockError
from smartstock.store.db import Store
from smartstock.store.snapshots import label_snapshot
from smartstock.sync import outbox
from smartstock.sync.client import InboundMessage, MqttClient, STATUS_ONLINE
from smartstock.sync.discovery import discovery_messages
from smartstock.sync.drain import OutboxDrainer
from smartstock.sync.inbound import CommandHandler, CommandRouter, Reply, SalesInbox, parse_label, parse_set_threshold
from smartstock.sync.payloads import dumps, message
from smartstock.sync.topics import Topics

logger = logging.getLogger(__name__)

CAP_INTERVAL_S = 5.0
DRAIN_ON_STOP_S = 3.0
# paho keeps at most mqtt.inflight messages unacknowledged on the wire; the worker hands it up to this
# many times more, so the next message is queued in paho the moment a PUBACK frees a slot.
HANDOVER_FACTOR = 4
IDLE_POLL_S = 0.2


class SyncService:
    def __init__(self, mqtt_cfg: MqttConfig, device_cfg: DeviceConfig, store: Store, *,
                 state_provider: Callable[[], dict[str, Any]] | None = None,
                 skus_provider: Callable[[], list[str]] | None = None, cameras: Sequence[str] = (),
                 client_id: str | None = None, max_packet_bytes: int | None = None) -> None:
        self.cfg = mqtt_cfg
        self.store = store
        self.topics = Topics.from_config(mqtt_cfg, device_cfg)
        self.state_provider = state_provider
        self.skus_provider = skus_provider or (lambda: [])
        self.cameras = tuple(cameras)  # [[sources]] ids: each gets its own Home Assistant entities
        self.client = MqttClient(mqtt_cfg, self.topics, client_id=client_id,  # password: mqtt.password()
                                 max_packet_bytes=max_packet_bytes)
        self.drainer = OutboxDrainer(store, self._publish_row, device_id=device_cfg.device_id,
                                     inflight=mqtt_cfg.inflight * HANDOVER_FACTOR,
                                     batch_topic=self.topics.inspection_events,
                                     batch_events=mqtt_cfg.batch_events,
                                     historical_after_s=mqtt_cfg.historical_after_s)
        self.commands = CommandRouter(self.topics, mqtt_cfg.max_payload_kb)
        self.sales = SalesInbox(store, self.topics, mqtt_cfg.max_payload_kb)
        self.sales_topic = mqtt_cfg.sales_topic or self.topics.sales_in
        self.dropped: dict[str, int] = {}
        self._republish_hooks: list[Callable[[], None]] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._discovery_due = threading.Event()
        self._stats_due = threading.Event()
        self._published_skus: tuple[str, ...] | None = None
        self._thread: threading.Thread | None = None
        self._error_logged: str | None = None

        self.client.on_ack = self._on_ack
        self.client.add_connect_listener(self._on_connect)
        self.client.subscribe(self.topics.cmd_filter, self._on_command, retain_as_published=True)
        self.client.subscribe(self.sales_topic, self._on_sales)
        if mqtt_cfg.ha_discovery:
            self.client.subscribe(f"{mqtt_cfg.ha_prefix}/status", self._on_ha_status)
        self.commands.register("sync-now", self._cmd_sync_now)
        self.commands.register("rebirth", self._cmd_rebirth)
        self.commands.register("republish", self._cmd_rebirth)
        self.commands.register("snapshot", self._cmd_snapshot)

    # -- hooks for the app, the OTA agent and the status page -----------------------------------
    def subscribe(self, topic_filter: str, handler: Callable[[InboundMessage], None], qos: int = 1) -> None:
        """Deliver a topic to another component (the OTA agent: model/desired, artifacts)."""
        self.client.subscribe(topic_filter, handler, qos)

    def register_command(self, name: str, handler: CommandHandler) -> None:
        self.commands.register(name, handler)

    def on_republish(self, fn: Callable[[], None]) -> None:
        """`fn` re-enqueues the retained state (called by the `rebirth` command)."""
        self._republish_hooks.append(fn)

    def wake(self) -> None:
        """New rows in the outbox: publish now rather than at the next poll."""
        self._wake.set()

    def stats(self) -> dict[str, Any]:
        """Counters for /metrics and the `{base}/sync` topic."""
        s = self.drainer.stats()
        s["dropped"] = sum(self.dropped.values())
        s.update({f"dropped_{k}": v for k, v in self.dropped.items()})
        s.update(self.commands.counters)
        s.update(self.sales.counters)
        s["connected"] = int(self.client.connected)
        s["connects"] = self.client.connects
        return s

    def metric_values(self) -> dict[str, int]:
        """Cheap counters for /metrics (no store query: the app reports the backlog itself)."""
        c = self.drainer.counters
        return {"mqtt_connected": int(self.client.connected), "mqtt_published": c["published"],
                "mqtt_acked": c["acked"], "mqtt_resent": c["resent"], "mqtt_dropped": sum(self.dropped.values()),
                "mqtt_rejected": c["rejected"], "mqtt_in_flight": self.drainer.in_flight}

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.client.start()
        self._thread = threading.Thread(target=self._run, name="sync-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0, drain_s: float = DRAIN_ON_STOP_S) -> None:
        """Give the worker up to `drain_s` to empty the outbox (the rest waits for the next start),
        delete what was acknowledged, publish offline, disconnect.

        A link that is down at this moment (a cut, a broker restart) is usually back within the
        reconnect backoff, so the wait covers reconnecting too, not only a connected drain."""
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and self._thread is not None and self._thread.is_alive():
            if self.client.connected and self.drainer.in_flight == 0 and self._backlog_rows() == 0:
                break
            self._wake.set()
            time.sleep(0.05)
        left = self._backlog_rows()
        if left:
            logger.info("sync: stopping with %d message(s) in the outbox; they are sent after the next start", left)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.drainer._process_acks()
            self.drainer.flush_deletes(force=True)
        except (SmartStockError, sqlite3.Error) as e:
            logger.warning("sync: could not delete the last acknowledged rows (%s); they will be sent again", e)
        self.client.stop()

    def _backlog_rows(self) -> int:
        with self.store.read() as conn:
            return outbox.backlog(conn)["rows"]

    def _run(self) -> None:
        next_caps = next_stats = 0.0
        while not self._stop.is_set():
            self._wake.clear()
            more = False
            try:
                more = self.drainer.step(self.client.connected)
                now = time.monotonic()
                if self.client.connected and self._discovery_due.is_set():
                    self._discovery_due.clear()
                    self.publish_discovery()
                if now >= next_caps:
                    next_caps = now + CAP_INTERVAL_S
                    self.enforce_caps()
                if now >= next_stats or (self.client.connected and self._stats_due.is_set()):
                    self._stats_due.clear()
                    next_stats = now + self.cfg.stats_interval_s
                    self._periodic()
                if self._error_logged:
                    logger.info("sync: store readable again")
                    self._error_logged = None
            except (SmartStockError, sqlite3.Error) as e:
                if str(e) != self._error_logged:
                    logger.error("sync: %s; retrying", e)
                    self._error_logged = str(e)
                self._stop.wait(1.0)
            except Exception as e:  # a bug must not end the sync for good: log once, carry on
                if repr(e) != self._error_logged:
                    logger.exception("sync: unexpected error in the worker; retrying")
                    self._error_logged = repr(e)
                self._stop.wait(1.0)
            if not more:
                self._wake.wait(IDLE_POLL_S)

    # -- periodic work ------------------------------------------------------------------------
    def enforce_caps(self) -> dict[str, int]:
        with self.store.transaction() as conn:
            drops = outbox.enforce_caps(conn, max_rows=self.cfg.outbox_max_rows,
                                        max_bytes=int(self.cfg.outbox_max_mb * 1e6),
                                        max_age_s=self.cfg.outbox_max_age_days * 86400.0)
        if drops:
            for k, v in drops.items():
                self.dropped[k] = self.dropped.get(k, 0) + v
            logger.warning("sync: outbox over its cap, dropped %s (policy: telemetry, then state, then events)",
                           ", ".join(f"{v} {k}" for k, v in drops.items()))
        return drops

    def _periodic(self) -> None:
        stats = self.stats()
        logger.debug("sync: %s", stats)
        if not self.client.connected:
            return
        self._publish_live(self.topics.sync_stats, message(self.topics.device_id, **stats), retain=True)
        if self.cfg.ha_discovery and self._published_skus is not None \
                and tuple(sorted(set(self.skus_provider()))) != self._published_skus:
            self.publish_discovery()

    def publish_discovery(self) -> int:
        if not self.cfg.ha_discovery:
            return 0
        skus = tuple(sorted(set(self.skus_provider())))
        msgs = discovery_messages(self.topics, ha_prefix=self.cfg.ha_prefix, skus=skus, cameras=self.cameras)
        for topic, payload in msgs:
            self._publish_live(topic, payload, retain=True)
        self._published_skus = skus
        logger.info("sync: Home Assistant discovery published (%d entities)", len(msgs))
        return len(msgs)

    # -- paho thread callbacks ----------------------------------------------------------------
    def _on_ack(self, mid: int, ok: bool, retryable: bool) -> None:
        self.drainer.on_ack(mid, ok, retryable)
        self._wake.set()

    def _on_connect(self) -> None:
        self.drainer.on_reconnect()
        self._discovery_due.set()
        self._stats_due.set()
        self._wake.set()

    def _on_ha_status(self, msg: InboundMessage) -> None:
        if msg.payload.strip().lower() == b"online":
            logger.info("sync: Home Assistant is online; republishing discovery")
            self._discovery_due.set()
            self._wake.set()

    def _on_command(self, msg: InboundMessage) -> None:
        reply = self.commands.handle(msg)
        if reply is not None:
            self._reply(reply)

    def _on_sales(self, msg: InboundMessage) -> None:
        try:
            reply = self.sales.handle(msg)
        except (SmartStockError, sqlite3.Error) as e:
            logger.error("sales on %s not stored: %s", msg.topic, e)
            reply = Reply(self.topics.reply_topic(msg.response_topic, "sales"),
                          message(self.topics.device_id, ok=False, error=f"not stored ({e}); send it again",
                                  accepted=[], duplicates=[], rejected=[]), msg.correlation_data)
        self._reply(reply)

    # -- commands -----------------------------------------------------------------------------
    def _cmd_sync_now(self, _args: dict[str, Any]) -> dict[str, Any]:
        self._wake.set()
        s = self.drainer.stats()
        return {"backlog": s["backlog"], "in_flight": s["in_flight"], "connected": self.client.connected}

    def _cmd_rebirth(self, _args: dict[str, Any]) -> dict[str, Any]:
        self.client.publish(self.topics.status, STATUS_ONLINE, qos=1, retain=True)
        n = self.publish_discovery()
        if self._republish_hooks:  # they may take a while: never block paho's network thread
            threading.Thread(target=self._run_republish_hooks, name="sync-rebirth", daemon=True).start()
        return {"discovery": n, "state_hooks": len(self._republish_hooks)}

    def _run_republish_hooks(self) -> None:
        for fn in self._republish_hooks:
            try:
                fn()
            except Exception:  # one failing hook must not stop the others
                logger.exception("sync: republish hook %s failed", getattr(fn, "__name__", fn))
        self._wake.set()

    def _cmd_snapshot(self, _args: dict[str, Any]) -> dict[str, Any]:
        state = self.state_provider() if self.state_provider else {}
        return {"state": state, "sync": self.stats()}

    # -- publishing ---------------------------------------------------------------------------
    def _publish_row(self, topic: str, payload: bytes, qos: int, retain: bool,
                     user_properties: list[tuple[str, str]] | None) -> int | None:
        return self.client.publish(topic, payload, qos=qos, retain=retain, user_properties=user_properties)

    def _publish_live(self, topic: str, payload: dict[str, Any], *, retain: bool = False,
                      correlation_data: bytes | None = None) -> None:
        try:
            self.client.publish(topic, dumps(payload), qos=1, retain=retain, correlation_data=correlation_data)
        except ValueError as e:
            logger.error("sync: cannot publish on %s: %s", topic, e)

    def _reply(self, reply: Reply) -> None:
        self._publish_live(reply.topic, reply.payload, correlation_data=reply.correlation_data)


def _skus_of(store: Store, configured: list[str]) -> list[str]:
    rows = store.query("SELECT sku FROM skus UNION SELECT sku FROM stock_totals")
    return sorted({*configured, *(r[0] for r in rows)})


def packet_limit(cfg: Config) -> int:
    """The MQTT 5 Maximum Packet Size this device asks for: `mqtt.max_packet_kb`, else room for the
    largest message it accepts (a command or sales message, an OTA envelope, an artifact over MQTT)
    plus 64 KB for topic and properties."""
    if cfg.mqtt.max_packet_kb:
        return cfg.mqtt.max_packet_kb * 1024
    largest = cfg.mqtt.max_payload_kb * 1024
    if cfg.ota.enabled and cfg.ota.keyring_dir:
        from smartstock.ota.envelope import DEFAULT_MAX_ENVELOPE_BYTES

        largest = max(largest, DEFAULT_MAX_ENVELOPE_BYTES, int(cfg.ota.max_artifact_mb * 1024 * 1024))
    return largest + 64 * 1024


def set_threshold_command(classifier: Callable[[], Classifier | None]) -> CommandHandler:
    """The `set-threshold` command: one label's threshold on the model serving now, until restart.
    `classifier` returns that model when the command arrives (a swap may have replaced it since)."""

    def set_threshold(args: dict[str, Any]) -> dict[str, Any]:
        label, value = parse_set_threshold(args)
        clf = classifier()
        if clf is None:
            raise InputError("no model is serving yet; send the command again once the service runs")
        labels = clf.labels
        if label not in labels:
            raise InputError(f"unknown label {label!r}; the model's labels are {', '.join(map(str, labels))}")
        clf.thresholds = {**clf.thresholds, label: value}  # one assignment: the loop sees old or new
        logger.info("threshold for %s set to %.3f by command (until restart; set vision.thresholds to keep it)",
                    label, value)
        return {"label": label, "threshold": value, "persistent": False}

    return set_threshold


def label_command(store: Store) -> CommandHandler:
    """The `label` command: an operator's label for a stored snapshot (for `smartstock dataset export`)."""

    def label(args: dict[str, Any]) -> dict[str, Any]:
        snapshot_id, name = parse_label(args)
        return label_snapshot(store, snapshot_id, name, by="mqtt")

    return label


def start_sync(mqtt_cfg: MqttConfig, device_cfg: DeviceConfig, store: Store, *, skus: Sequence[str],
               cameras: Sequence[str] = (), state: Callable[[], dict[str, Any]], classifier: Callable[[], Classifier | None],
               republish: Callable[[], None], max_packet_bytes: int | None = None) -> SyncService:
    """The service of the app's `start_sync` step, started: `skus` are the configured ones (the store's
    join them), `state` answers the snapshot command, `classifier` is the model the set-threshold
    command changes, `republish` re-enqueues the retained state on `rebirth`. The caller stops it."""
    svc = SyncService(mqtt_cfg, device_cfg, store, state_provider=state,
                      skus_provider=lambda: _skus_of(store, list(skus)), cameras=cameras, max_packet_bytes=max_packet_bytes)
    svc.register_command("set-threshold", set_threshold_command(classifier))
    svc.register_command("label", label_command(store))
    svc.on_republish(republish)
    svc.start()
    return svc
