"""The OTA agent: MQTT in, a worker thread that verifies, fetches, installs and judges the trial.

MQTT callbacks only enqueue (never block paho's thread or the inspection loop); the worker does
the slow parts (download, model load, golden samples) while the loop keeps classifying with the
old model, and the swap itself is the loop's `swap_classifier` between two batches. Start-up
goes through `startup()` so the service always serves a validated model and says which. A new demand
model is handed to the planner through the `on_demand_model` callback given to `start()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edge.loop import Classifier
from smartstock.config import Config
from smartstock.errors import SmartStockError
from smartstock.ota import addressing
from smartstock.ota.install import Installer
from smartstock.ota.keys import Keyring
from smartstock.ota.envelope import precheck
from smartstock.ota.kinds import DefectClassifierKind, KindUnavailable, kind_class
from smartstock.ota.refusal import FETCH_FAILED, UNSUPPORTED_KIND, UpdateRefused
from smartstock.ota.report import StateReporter
from smartstock.ota.trial import TrialLimits
from smartstock.ota.updater import Pending, Updater
from smartstock.store import Store
from smartstock.sync.topics import Topics

if TYPE_CHECKING:
    from edge.sync_worker import SyncService

logger = logging.getLogger(__name__)

POLL_S = 0.2
MAX_ARTIFACTS = 2  # artifact payloads kept (newest per hash), each at most ota.max_artifact_mb


class Inbox:
    """What MQTT hands the agent, bounded and coalesced so junk never delays a real update.

    Envelopes that pass the cheap pre-check (`envelope.precheck`, run on paho's thread) wait in
    `candidates`; those that fail it keep only their refusal, in a separate short `junk` line the
    worker serves after the candidates. Artifacts keep the newest payload per hash (at most
    MAX_ARTIFACTS), also when none is awaited yet: a re-pushed artifact that arrives before its
    envelope is still there when the envelope asks for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.wake = threading.Event()
        self.candidates: deque[tuple[bytes, str]] = deque(maxlen=8)
        self.junk: deque[UpdateRefused] = deque(maxlen=4)
        self._artifacts: OrderedDict[str, bytes] = OrderedDict()
        self.dropped = 0

    def put_envelope(self, raw: bytes, base: str) -> None:
        with self._lock:
            if (raw, base) not in self.candidates:
                self.dropped += len(self.candidates) == self.candidates.maxlen
                self.candidates.append((raw, base))
        self.wake.set()

    def put_junk(self, refusal: UpdateRefused) -> None:
        with self._lock:
            self.dropped += len(self.junk) == self.junk.maxlen
            self.junk.append(refusal)
        self.wake.set()

    def put_artifact(self, sha256: str, data: bytes) -> None:
        with self._lock:
            self._artifacts.pop(sha256, None)
            self._artifacts[sha256] = data
            while len(self._artifacts) > MAX_ARTIFACTS:
                self._artifacts.popitem(last=False)
        self.wake.set()

    def next_envelope(self) -> tuple[bytes, str] | None:
        with self._lock:
            return self.candidates.popleft() if self.candidates else None

    def next_junk(self) -> UpdateRefused | None:
        with self._lock:
            return self.junk.popleft() if self.junk else None

    def take_artifact(self, sha256: str) -> bytes | None:
        with self._lock:
            return self._artifacts.pop(sha256, None)


def limits_from(cfg: Config) -> TrialLimits:
    o = cfg.ota
    return TrialLimits(frames=o.trial_frames, max_s=o.trial_max_s, max_error_rate=o.trial_max_error_rate,
                       max_defect_rate_jump=o.trial_max_defect_rate_jump, max_slowdown=o.trial_max_slowdown)


class OtaAgent:
    def __init__(self, config: Config, state_dir: Path, store: Store, topics: Topics) -> None:
        self.config = config
        self.topics = topics
        self.reporter = StateReporter(store, topics.model_state, config.device.device_id)
        v = config.vision
        # set by start(); until then (start-up) nothing runs that swaps
        self._swap_classifier: Callable[[Classifier], object] = lambda model: None
        self._on_demand_model: Callable[[Path | None], None] = lambda path: None
        self.demand_model: Path | None = None  # the demand model served to the planner; None: forecast.lstm_model
        self.unavailable: dict[str, str] = {}  # kind -> why updates of that kind are off on this device
        self.installers = {"defect-classifier": Installer(
            state_dir, DefectClassifierKind(backend=v.backend, threads=v.threads_per_worker, roi=v.roi,
                                            thresholds=v.thresholds or None, providers=v.providers,
                                            trt_fp16=v.trt_fp16, trt_cache_root=state_dir / "trt-cache",
                                            io_binding=v.io_binding),
            self.reporter, swap=lambda m: self._swap_classifier(m), limits=limits_from(config))}
        try:  # the same path updates the demand LSTM the planner uses (forecast.lstm_model)
            demand_cls = kind_class("demand-forecaster")
        except KindUnavailable as e:
            self._kind_unavailable("demand-forecaster", str(e))
        else:
            self.installers["demand-forecaster"] = Installer(
                state_dir, demand_cls(history=lambda: sales_history(store, config.forecast.freq)), self.reporter,
                swap=self._swap_demand, limits=limits_from(config))
        self.keyring = Keyring(config.ota.keyring_dir) if config.ota.keyring_dir else None
        self.updater = Updater(device=config.device, ota=config.ota, state_dir=state_dir, reporter=self.reporter,
                               installers=self.installers, keyring=self.keyring) if self.keyring else None
        self.inbox = Inbox()
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._sync: SyncService | None = None
        self._waiting: tuple[Pending, str, float] | None = None  # (release, base it came from, since)
        self._deferred: list[tuple[bytes, str]] = []
        self._subscribed: set[str] = set()
        self.counters = {"envelopes": 0, "dropped": 0, "installs": 0, "refused": 0}
        # checked here (fail fast): a group name that is not a valid topic level is a config error
        self._bases = [topics.base] + [addressing.group_base(config.mqtt.prefix, g) for g in config.device.groups]

    def _kind_unavailable(self, kind: str, why: str) -> None:
        """Updates of `kind` are off: said in the log, on `{base}/model/state` and in the status."""
        self.unavailable[kind] = why
        logger.warning("OTA: updates of %s models are disabled on this device: %s", kind, why)
        self.reporter.report(kind, "unavailable", error=UNSUPPORTED_KIND,
                             detail=f"updates of this kind are disabled on this device: {why}")

    # -- start-up -----------------------------------------------------------------------------
    def startup(self, default_path: Path | None) -> Any:
        """The model to serve: undo an interrupted trial, then current / previous / default."""
        return self.installers["defect-classifier"].startup(default_path).model

    def startup_demand(self) -> None:
        """Serve the OTA-installed demand model if there is one (else the configured/shipped one stays)."""
        inst = self.installers.get("demand-forecaster")
        if inst is None:
            return
        configured = self.config.forecast.lstm_model
        default = configured or shipped_demand_model()
        try:
            note = "" if configured else ("shipped model, the baseline for updates; the planner uses an "
                                          "LSTM only once forecast.lstm_model is set or one is installed")
            served = inst.startup(default, default_note=note)
        except UpdateRefused as e:
            logger.info("OTA: no demand model to serve yet (%s); the first signed one will be installed", e.detail)
            return
        if served.which != "default":
            self._swap_demand(served.model)

    def _swap_demand(self, model: Any) -> None:
        """A demand model was installed, committed or rolled back (None: back to the configured one);
        the planner uses it from its next refresh on."""
        self.demand_model = model.path if model is not None else None
        self._on_demand_model(self.demand_model)

    def bases(self) -> list[str]:
        """Device base and one base per group: where envelopes for this device appear."""
        return list(self._bases)

    def start(self, swap_classifier: Callable[[Classifier], object], sync: SyncService | None, *,
              on_demand_model: Callable[[Path | None], None] | None = None) -> None:
        """The worker thread. `swap_classifier` hands a model to the loop between batches; `sync` (None
        without MQTT) delivers envelopes and artifacts; `on_demand_model` tells the planner which demand
        model to use (None: the configured one) whenever an install, commit or rollback changes it."""
        self._swap_classifier = swap_classifier
        if on_demand_model is not None:
            self._on_demand_model = on_demand_model
        self._sync = sync
        if self.updater is None:  # said on model/state too: a technician pushing here sees why nothing happens
            logger.warning("OTA: ota.keyring_dir is not set, so no update can be verified; updates are disabled")
            self.reporter.report("defect-classifier", "disabled", error="no_keyring",
                                 detail="updates disabled: no keyring (set ota.keyring_dir to a folder holding the "
                                        "technicians' <key-id>.pub files and restart)")
        self._thread = threading.Thread(target=self._run, name="ota-agent", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- MQTT callbacks (paho's thread: a cheap pre-check, then enqueue only) ----------------
    def _on_desired(self, raw: bytes, base: str) -> None:
        if not raw:  # the retained envelope was cleared (`ota rollout abort` withdraws a release): nothing to do
            return
        try:
            precheck(raw, max_bytes=self.updater.max_envelope_bytes if self.updater else len(raw))
        except UpdateRefused as e:
            self.inbox.put_junk(e)
            return
        self.inbox.put_envelope(raw, base)

    def _subscribe(self) -> None:
        if self._sync is None or self.updater is None:
            return
        for base in self.bases():
            topic = addressing.desired(base)
            if topic not in self._subscribed:
                self._sync.subscribe(topic, lambda msg, base=base: self._on_desired(msg.payload, base))
                self._subscribed.add(topic)

    def _want_artifact(self, base: str, sha256: str) -> None:
        topic = addressing.artifact(base, sha256)
        if topic not in self._subscribed and self._sync is not None:
            self._sync.subscribe(topic, lambda msg: msg.payload and self.inbox.put_artifact(sha256, msg.payload))
            self._subscribed.add(topic)

    # -- worker -------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._subscribe()
                self.inbox.wake.wait(POLL_S)
                self.inbox.wake.clear()
                self._take_inbox()
                if self.updater is not None:
                    self.updater.poll()
                    self._check_waiting()
                    if self._deferred and not self.updater.busy:
                        raw, base = self._deferred.pop(0)
                        self._on_envelope(raw, base)
            except SmartStockError as e:
                logger.error("OTA: %s", e)
            except Exception:  # noqa: BLE001 - the agent must never take the service down
                logger.exception("OTA: unexpected error; the running model keeps serving")
                self.stop_event.wait(1.0)

    def _take_inbox(self) -> None:
        """Every candidate envelope first, then the refusals of junk, then the awaited artifact."""
        self.counters["dropped"] = self.inbox.dropped
        if self.updater is None:
            return
        while (item := self.inbox.next_envelope()) is not None:
            self._on_envelope(*item)
        while (refusal := self.inbox.next_junk()) is not None:
            self.counters["envelopes"] += 1
            self.counters["refused"] += 1
            self.updater.refuse(refusal)
        if self._waiting is not None:
            data = self.inbox.take_artifact(self._waiting[0].sha256)
            if data is not None:
                self._on_artifact(self._waiting[0].sha256, data)

    def _on_envelope(self, raw: bytes, base: str) -> None:
        self.counters["envelopes"] += 1
        if self.updater.busy or self._waiting is not None:
            if (raw, base) not in self._deferred:  # retained re-deliveries on reconnect: keep one copy
                self._deferred = (self._deferred + [(raw, base)])[-8:]
            return
        try:
            pending = self.updater.offer(raw)
            if pending is None:
                return
            a = pending.release.artifact
            staged = self.updater.local(pending)
            if staged is None and a.url:
                staged = self.updater.fetch(pending)
            if staged is None:
                self._waiting = (pending, base, time.monotonic())
                self.reporter.report(pending.release.kind, "downloading", release=pending.release.release,
                                     sha256=a.sha256, model_id=pending.release.model_id, progress=20,
                                     detail=f"waiting for the retained artifact on {addressing.artifact(base, a.sha256)}")
                self._want_artifact(base, a.sha256)
                return
            self._install(pending, staged)
        except UpdateRefused:
            self.counters["refused"] += 1

    def _on_artifact(self, sha256: str, data: bytes) -> None:
        if self._waiting is None or self._waiting[0].sha256 != sha256:
            return  # a retained artifact re-delivered after its install: nothing to do
        pending = self._waiting[0]
        self._waiting = None
        try:
            staged = self.updater.stage(pending, data)
            self._install(pending, staged)
        except UpdateRefused:
            self.counters["refused"] += 1

    def _install(self, pending: Pending, staged: Path) -> None:
        self.updater.install(pending, staged)
        self.counters["installs"] += 1

    def _check_waiting(self) -> None:
        if self._waiting is None:
            return
        pending, base, since = self._waiting
        if time.monotonic() - since > self.config.ota.artifact_timeout_s:
            self._waiting = None
            self.updater.forget(pending)  # the next delivery of the envelope retries
            self.counters["refused"] += 1
            self.reporter.report(pending.release.kind, "refused", release=pending.release.release,
                                 sha256=pending.sha256, model_id=pending.release.model_id, error=FETCH_FAILED,
                                 detail=f"artifact did not arrive on {addressing.artifact(base, pending.sha256)} "
                                 f"within {self.config.ota.artifact_timeout_s:g} s")


def shipped_demand_model() -> Path | None:
    """The shipped demand LSTM (models/demand/demand_lstm.onnx, see smartstock.shipped), if present."""
    from smartstock.shipped import shipped_model

    return shipped_model("demand", "demand_lstm.onnx")


def sales_history(store: Store, freq: str) -> list[Any]:
    """Every SKU's bucketed sales from the store (the demand model's shadow backtest data)."""
    from smartstock.planning import bucket_daily
    from smartstock.store.sales import sales_series, skus_with_sales

    with store.transaction() as conn:
        daily = [sales_series(conn, sku) for sku in skus_with_sales(conn)]
    daily = [d for d in daily if d]
    if not daily:
        return []
    end = max(d[-1][0] for d in daily)
    return [bucket_daily(d, freq, end)[1] for d in daily]
