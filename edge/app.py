"""The device service: start-up as a flat list of `start_*` steps, stop in reverse (Frigate style).

Each step builds one component from typed arguments (the config section it needs, the store, the
components started before it), keeps it in an attribute declared in `App.__init__` and registers
how to stop it; `stop()` runs those in reverse order, so the source stops before the loop drains,
the loop drains before the store closes, and the store closes last.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.capture import WatchedSource, open_source
from edge.http import HttpServer
from edge.loop import Camera, Classifier, InspectionLoop, LoopSettings
from edge.metrics import Metrics, prometheus_text
from edge.notify import Notifier
from edge.recorder import recent_inspections
from edge.refresh import Refresher
from edge.snapshots import SnapshotStore
from edge.trigger import make_trigger
from smartstock import __version__
from smartstock.config import Config
from smartstock.errors import SmartStockError
from smartstock.redact import redact
from smartstock.store import STORE_FILENAME, Store, open_store
from smartstock.store.alerts import open_alerts
from smartstock.store.db import pending_migrations
from smartstock.store.snapshots import FOLDER as SNAPSHOT_FOLDER, recent_uncertain
from smartstock.store.stock import levels
from smartstock.sync.outbox import backlog
from smartstock.sync.topics import Topics

if TYPE_CHECKING:  # imported by their steps: paho only when MQTT is used, the OTA stack only when OTA is
    from edge.ota_agent import OtaAgent
    from edge.sync_worker import SyncService

logger = logging.getLogger(__name__)

# Start-up time asked of systemd while the store upgrades its schema: migration 0004 took 35 s on 10M
# stock movements on 2 loaded x86 cores (python -m benchmarks store); a Jetson with months of history
# can take several times that, and the unit's TimeoutStartSec is 120 s.
MIGRATION_ALLOWANCE_S = 1800.0


def camera_state(cam: dict[str, Any]) -> dict[str, Any]:
    """One camera in the MQTT state (App.cameras_status, the figures a dashboard shows per camera)."""
    k = cam["counters"]
    return {"id": cam["id"], "sku": cam["sku"], "status": cam["status"], "ended": cam["ended"], "fps": cam["fps"],
            "seconds_since_frame": cam["seconds_since_frame"], "parts": k.get("parts_inspected", 0),
            "defects": k.get("defects", 0), "defect_rate": cam["defect_rate"], "dropped": k.get("frames_dropped", 0),
            "capture_errors": k.get("capture_errors", 0), "last_error": cam["last_error"]}


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class App:
    def __init__(self, config: Config, state_dir: Path, *, max_parts: int | None = None,
                 classifier: Classifier | None = None, notifier: Notifier | None = None) -> None:
        """`classifier`: serve this model instead of loading one (tests, demos; OTA start-up is then
        skipped). The MQTT password comes from mqtt.password_env or mqtt.password_file, as everywhere."""
        self.config = config
        self.state_dir = Path(state_dir)
        self.max_parts = max_parts
        self.topics = Topics.from_config(config.mqtt, config.device)
        self.stop_event = threading.Event()
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self.started_at = time.time()
        self.store: Store | None = None
        self.classifier: Classifier | None = classifier
        self.cameras = config.cameras()         # [[sources]], or [source] as the one camera "cam1"
        self.sources: dict[str, WatchedSource] = {}           # camera id -> its watched source
        self.camera_snapshots: dict[str, SnapshotStore] = {}  # camera id -> its snapshot folder and quota
        self.source: WatchedSource | None = None  # the first camera (one-camera callers)
        self.loop: InspectionLoop | None = None
        self.snapshots: SnapshotStore | None = None  # the first camera's
        self.refresher: Refresher | None = None
        self.http: HttpServer | None = None
        self.sync: SyncService | None = None   # when mqtt.enabled
        self.ota: OtaAgent | None = None       # when ota.enabled and no classifier was given
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self.steps: list[Callable[[], None]] = [
            self.start_store,
            self.start_sync,  # early: its stop runs after the loop drained, so the last parts go out too
            self.start_ota_models,  # before the classifier: it chooses the model to serve
            self.start_classifier,
            self.start_snapshots,
            self.start_source,
            self.start_loop,
            self.start_refresh,
            self.start_http,
            self.start_ota,  # last: it swaps models through the loop and tells the refresher of demand models
        ]

    # -- start-up steps ----------------------------------------------------------------------
    def on_stop(self, name: str, fn: Callable[[], None]) -> None:
        """Register how to undo a step; run in reverse order by stop()."""
        self._stops.append((name, fn))

    def start_store(self) -> None:
        pending = pending_migrations(self.state_dir / STORE_FILENAME)
        if pending:  # a schema upgrade of a long history can outlast TimeoutStartSec: killed, it rolls back
            self.notifier.extend_start(MIGRATION_ALLOWANCE_S, f"upgrading the store ({', '.join(pending)})")
            logger.info("store: applying %s (can take minutes on a long history)", ", ".join(pending))
        self.store = open_store(self.state_dir)
        self.on_stop("store", self.store.close)
        logger.info("store %s (schema %s)", self.store.path, self.store.schema_version()[-1])

    def start_classifier(self) -> None:
        clf = self.classifier
        if clf is None:
            from smartstock.vision.classifier import DefectClassifier

            v = self.config.vision
            clf = self.classifier = DefectClassifier.load(v.model, backend=v.backend, threads=v.threads_per_worker,
                                                          roi=v.roi, thresholds=v.thresholds or None,
                                                          providers=v.providers, trt_fp16=v.trt_fp16, io_binding=v.io_binding,
                                                          trt_cache_root=self.state_dir / "trt-cache")
        logger.info("model %s release %s on %s", clf.model_id, clf.release, clf.provider)

    def start_ota_models(self) -> None:
        """Serve the validated current / previous / default model (undoes an interrupted trial), and
        the OTA-installed demand model if there is one."""
        if not self.config.ota.enabled or self.classifier is not None:
            return
        if self.store is None:
            raise RuntimeError("start_ota_models needs start_store before it")
        from edge.ota_agent import OtaAgent
        from smartstock.vision.classifier import default_model_path

        default = self.config.vision.model
        if default is None:
            try:
                default = default_model_path()
            except SmartStockError as e:  # the agent then serves an installed model, or says there is none
                logger.error("%s", e)
        self.ota = OtaAgent(self.config, self.state_dir, self.store, self.topics)
        self.classifier = self.ota.startup(default)
        self.ota.startup_demand()

    def start_ota(self) -> None:
        """The update agent's worker thread: it swaps models through the loop between batches, and
        hands a new demand model to the refresher."""
        if self.ota is None:
            return
        if self.loop is None or self.refresher is None:
            raise RuntimeError("start_ota needs start_loop and start_refresh before it")
        self.ota.start(self._swap_classifier, self.sync, on_demand_model=self.refresher.set_demand_model)
        self.on_stop("ota agent", self.ota.stop)

    def _swap_classifier(self, model: Classifier) -> None:
        if self.loop is not None:
            self.loop.swap_classifier(model)
        self.classifier = model

    def start_snapshots(self) -> None:
        """One folder and quota per camera; the one-camera shortcut keeps the plain `snapshots` folder."""
        ins = self.config.inspection
        if not ins.snapshots:
            return
        root = self.state_dir / SNAPSHOT_FOLDER
        for cam in self.cameras:
            quota = ins.snapshot_max_mb if cam.snapshot_max_mb is None else cam.snapshot_max_mb
            folder = root / cam.id if self.config.sources else root
            self.camera_snapshots[cam.id] = SnapshotStore(folder, int(quota * 1e6))
        self.snapshots = self.camera_snapshots[self.cameras[0].id]

    def start_source(self) -> None:
        """One watched source per camera; a missing file or folder fails the start (a config error)."""
        for cam in self.cameras:
            src = open_source(cam)
            self.sources[cam.id] = src
            self.on_stop("source" if len(self.cameras) == 1 else f"source {cam.id}", src.close)
            logger.info("camera %s: %s (status %s, sku %s)", cam.id, src.describe(), src.status, cam.sku)
        self.source = self.sources[self.cameras[0].id]

    def start_loop(self) -> None:
        if self.store is None or not self.sources or self.classifier is None:
            raise RuntimeError("start_loop needs start_store, start_classifier and start_source before it")
        ins, v = self.config.inspection, self.config.vision
        settings = LoopSettings(sku=self.cameras[0].sku, device_id=self.config.device.device_id,
                                events_topic=self.topics.inspection_events, queue_size=ins.queue_size,
                                batch_max=v.batch_max, batch_wait_s=v.batch_wait_ms / 1000.0, workers=v.worker_count, max_parts=self.max_parts,
                                uncertain_margin=ins.uncertain_margin, prepare_in_capture=v.preprocess_in_capture)
        cameras = [Camera(c.id, self.sources[c.id], c.sku, snapshots=self.camera_snapshots.get(c.id),
                          # the shortcut's vision.roi is the model's own crop; a [[sources]] roi crops before it
                          roi=c.roi if self.config.sources else None,
                          trigger=make_trigger(c.trigger, every_n=c.every_n, motion_threshold=c.motion_threshold,
                                               roi=c.roi))
                   for c in self.cameras]
        self.loop = InspectionLoop(None, self.classifier, self.store, settings, cameras=cameras, metrics=self.metrics)
        self.loop.start()
        self.on_stop("inspection loop", self.loop.stop)

    def start_refresh(self) -> None:
        if self.store is None:
            raise RuntimeError("start_refresh needs start_store before it")
        self.refresher = Refresher(self.store, self.config, self.topics, status=self.state_summary,
                                   camera=self.silent_cameras, stop_event=self.stop_event,
                                   demand_model=self.ota.demand_model if self.ota is not None else None)
        self.refresher.start()
        self.on_stop("refresh", lambda: self.refresher.join(5.0) if self.refresher else None)

    def start_sync(self) -> None:
        if not self.config.mqtt.enabled:
            logger.info("mqtt disabled (mqtt.enabled = false): events stay in the outbox")
            return
        if self.store is None:
            raise RuntimeError("start_sync needs start_store before it")
        from edge.sync_worker import packet_limit, start_sync  # paho only when MQTT is used

        cfg = self.config
        sync = start_sync(cfg.mqtt, cfg.device, self.store, skus=[*cfg.camera_skus(), *cfg.inventory.skus],
                          cameras=[c.id for c in cfg.sources], state=self.status, classifier=self._serving_classifier, republish=self._republish_state,
                          max_packet_bytes=packet_limit(cfg))
        self.sync = sync
        self.on_stop("mqtt sync", lambda: sync.stop(drain_s=cfg.mqtt.drain_on_stop_s))

    def _serving_classifier(self) -> Classifier | None:
        """The model classifying now (the loop's, once it runs): the set-threshold command changes it."""
        return self.loop.classifier if self.loop is not None else self.classifier

    def _republish_state(self) -> None:
        """The `rebirth` command: alerts and state again (inventory follows at the next refresh)."""
        if self.refresher is not None:  # none while starting: the refresher publishes both once it runs
            self.refresher.check_alerts(force_publish=True)
            self.refresher.publish_state()

    def start_http(self) -> None:
        if not self.config.http.enabled:
            return
        h = self.config.http
        self.http = HttpServer(h.host, h.port, self, read_timeout_s=h.read_timeout_s, max_connections=h.max_connections)
        self.http.start()
        (self.state_dir / "http.port").write_text(f"{self.http.port}\n")
        self.on_stop("http", self.http.stop)

    # -- run / stop --------------------------------------------------------------------------
    def start(self) -> None:
        try:
            for step in self.steps:
                step()
        except BaseException:
            self.stop()
            raise

    def run(self) -> int:
        """Start, tell systemd we are ready, ping its watchdog while alive, stop on request.

        The watchdog follows `alive()`, not `health()`: a camera outage is the source's to ride out
        (reconnect with backoff) and is reported through STATUS= and the camera_down alert; stopping
        the pings would have systemd kill and restart the service every WatchdogSec, forever.
        """
        self.start()
        self.notifier.ready(f"inspecting {', '.join(self.config.camera_skus())}")
        interval = min(1.0, self.notifier.ping_interval_s())
        shown = ""
        try:
            while not self.stop_event.is_set():
                if self.loop is not None and self.loop.done.is_set():
                    logger.info("finished: %d part(s) inspected", self.metrics.counters["parts_inspected"])
                    break
                if self.alive()[0]:
                    self.notifier.watchdog()
                reason = self.health()[1]
                if reason != shown:  # once per change, shown by `systemctl status`
                    self.notifier.status(reason)
                    shown = reason
                self.stop_event.wait(interval)
        finally:
            self.stop()
        return 0

    def request_stop(self, reason: str = "") -> None:
        if not self.stop_event.is_set():
            logger.info("stopping%s", f" ({reason})" if reason else "")
        self.stop_event.set()

    def stop(self) -> None:
        self.notifier.stopping()
        self.stop_event.set()
        while self._stops:
            name, fn = self._stops.pop()
            try:
                fn()
            except Exception:  # noqa: BLE001 - stop the rest even if one part fails
                logger.exception("stopping %s failed", name)
        logger.info("stopped")

    # -- status for HTTP, MQTT state and systemd ---------------------------------------------
    def silent_cameras(self) -> list[tuple[str, str, str, float]]:
        """Each live camera as (alert id, name, status, seconds without a usable frame) for the
        camera_down alert: one alert per camera under [[sources]] (alert id = camera id), the plain
        `camera_down` for the one-camera shortcut (alert id ""). A camera whose frames arrive but cannot
        be taken (capture errors) is as silent as one that delivers nothing."""
        loop_cams = {c.id: c for c in self.loop.cameras} if self.loop is not None else {}
        out = []
        for cam_id, s in self.sources.items():
            if s.ended or not s.realtime:
                continue
            since = s.seconds_since_frame()
            status = s.status
            if (lc := loop_cams.get(cam_id)) is not None and lc.error:
                since, status = max(since, lc.seconds_since_good_frame()), "error"
            named = bool(self.config.sources)
            out.append((cam_id if named else "", f"{cam_id} ({s.name})" if named else s.name, status, since))
        return out

    def alive(self) -> tuple[bool, str]:
        """The loop and its inference workers run (the systemd watchdog and the container health check)."""
        if self.loop is None or not self.sources:
            return False, "starting"
        if self.loop.worker_error:
            return False, f"inspection loop failed: {self.loop.worker_error}"
        if not self.loop.alive() and not self.loop.done.is_set():
            return False, "inference worker stopped"
        return True, "alive"

    def health(self) -> tuple[bool, str]:
        """alive(), the camera delivering frames and the store taking writes (/healthz, STATUS=)."""
        ok, reason = self.alive()
        if not ok:
            return ok, reason
        down = [c for c in self.cameras_status() if c["status"] != "ok" and not c["ended"]]
        if down:  # the other cameras keep inspecting; health names each one that does not
            named = len(self.sources) > 1
            return False, "; ".join(f"camera {c['id'] + ' ' if named else ''}{c['status']}: {c['last_error']}"
                                    for c in down)
        if (store_problem := self.loop.store_failing()) is not None:
            return False, store_problem
        return True, "ok (replay finished)" if all(s.ended for s in self.sources.values()) else "ok"

    def _camera_status(self, cameras: list[dict[str, Any]]) -> str:
        """The worst camera status (down > reconnecting > error > ok): one word for the MQTT state."""
        if not cameras:
            return "down"
        statuses = {c["status"] for c in cameras}
        return next((st for st in ("down", "reconnecting", "error") if st in statuses), "ok")

    def cameras_status(self) -> list[dict[str, Any]]:
        """Each camera for /api/status, the status page, /metrics and health: source, status (ok,
        reconnecting, down, or error while its frames cannot be taken), SKU, rate and its own counters."""
        loop_cams = {c.id: c for c in self.loop.cameras} if self.loop is not None else {}
        out = []
        for cam in self.cameras:
            src = self.sources.get(cam.id)
            lc = loop_cams.get(cam.id)
            counters = dict(lc.counters) if lc is not None else {}
            error = lc.error if lc is not None else ""
            status = src.status if src else "down"
            if error and status == "ok":
                status = "error"
            out.append({"id": cam.id, "sku": cam.sku, "status": status,
                        "source": redact(src.describe()) if src else "", "kind": src.kind if src else "",
                        "ended": bool(src and src.ended),
                        "seconds_since_frame": round(src.seconds_since_frame(), 1) if src else None,
                        "last_error": redact(error or (src.last_error if src else "")),
                        "frames_corrupt": src.corrupt if src else 0, "source_reopens": src.reopens if src else 0,
                        "fps": round(lc.rate.rate(), 2) if lc is not None else 0.0,
                        "defect_rate": round(lc.defect_rate, 4) if lc is not None else 0.0,
                        "counters": counters})
        return out

    def state_summary(self) -> dict[str, Any]:
        """Small health figures for the retained MQTT state topic; `cameras` has one entry per camera
        (also published retained on `{base}/camera/<id>/state` by the refresher)."""
        m = self.metrics.snapshot()
        clf = self.classifier
        with self._read() as conn:
            out = backlog(conn) if conn else {"rows": 0, "bytes": 0}
        cameras = self.cameras_status()
        return {"model_id": clf.model_id if clf else None, "model_release": clf.release if clf else None,
                "provider": clf.provider if clf else None, "camera": self._camera_status(cameras),
                "cameras": [camera_state(c) for c in cameras], "fps": round(m["fps"], 2),
                "latency_ms_p50": round(m["latency_ms_p50"], 2), "latency_ms_p99": round(m["latency_ms_p99"], 2),
                "parts": m["parts_inspected"], "dropped": m["frames_dropped"], "defect_rate": round(m["defect_rate"], 4),
                "backlog": out["rows"], "rss_mb": round(rss_bytes() / 1e6, 1),
                "groups": list(self.config.device.groups)}  # `ota rollout --group G` finds G's devices by this

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        """A read-only snapshot of the store for a status read from an HTTP or MQTT thread (None before
        start_store): it never waits for the inspection writer nor holds it up."""
        if self.store is None:
            yield None
            return
        with self.store.read() as conn:
            yield conn

    def values(self) -> dict[str, Any]:
        """Every numeric figure (counters, gauges, percentiles) in one dict."""
        m = self.metrics.snapshot()
        with self._read() as conn:
            out = backlog(conn) if conn else {"rows": 0, "bytes": 0}
        srcs = list(self.sources.values())
        return {**m, "queue_depth": self.loop.queue.qsize() if self.loop else 0, "outbox_rows": out["rows"],
                "outbox_bytes": out["bytes"], "rss_bytes": rss_bytes(),
                "frames_corrupt": sum(s.corrupt for s in srcs), "source_reopens": sum(s.reopens for s in srcs),
                "camera_up": 1 if srcs and all(c["status"] == "ok" for c in self.cameras_status()) else 0,
                **(self.sync.metric_values() if self.sync is not None else {})}

    def status(self) -> dict[str, Any]:
        ok, reason = self.health()
        v = self.values()
        clf = self.classifier
        cameras = self.cameras_status()
        with self._read() as conn:
            stock = levels(conn) if conn else {}
            alerts = open_alerts(conn) if conn else []
            uncertain = recent_uncertain(conn, 10) if conn else []
        return {
            "device_id": self.config.device.device_id, "version": __version__, "healthy": ok, "health": reason,
            "started_at": self.started_at, "sku": self.cameras[0].sku,
            "skus": self.config.camera_skus(),
            "counters": {k: v[k] for k in self.metrics.COUNTERS + ("frames_corrupt", "source_reopens")},
            "fps": v["fps"], "dropped": v["frames_dropped"], "queue_depth": v["queue_depth"],
            "latency_ms": {"p50": v["latency_ms_p50"], "p99": v["latency_ms_p99"]},
            "inference_ms": {"p50": v["inference_ms_p50"], "p99": v["inference_ms_p99"]},
            "defect_rate": v["defect_rate"], "outbox": {"rows": v["outbox_rows"], "bytes": v["outbox_bytes"]},
            "rss_bytes": v["rss_bytes"], "uptime_s": v["uptime_s"],
            "camera": {k: cameras[0][k] for k in ("status", "source", "kind", "ended", "seconds_since_frame",
                                                  "last_error")},  # the first camera, as before [[sources]]
            "cameras": cameras,
            "model": {"id": clf.model_id if clf else None, "release": clf.release if clf else None,
                      "path": str(clf.model_path) if clf else "", "provider": clf.provider if clf else None,
                      "updates_unavailable": dict(self.ota.unavailable) if self.ota else {}},
            "stock": stock, "plans": self.refresher.plans if self.refresher else [],
            "plan_error": self.refresher.plan_error if self.refresher else None, "alerts": alerts,
            "recent": self.recent(10), "uncertain": uncertain,
        }

    def recent(self, limit: int) -> list[dict[str, Any]]:
        return recent_inspections(self.store, limit) if self.store else []

    def metrics_text(self) -> str:
        clf = self.classifier
        model = {"model_id": clf.model_id, "release": str(clf.release), "provider": clf.provider} if clf else None
        return prometheus_text(self.values(), labels={"device_id": self.config.device.device_id}, model=model,
                               cameras=self.cameras_status())

    def snapshot_path(self, name: str) -> Path | None:
        for store in self.camera_snapshots.values():
            if (p := store.path_of(name)) is not None:
                return p
        return None
