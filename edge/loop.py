"""The inspection loop: a capture thread that never blocks and an inference worker that batches.

capture thread: source.read -> ROI crop -> trigger (-> preprocessing, the model's input, when
`prepare_in_capture`: see `_prepare`) -> bounded queue. On a full queue the OLDEST part is
dropped and counted (a live camera must never wait). A replay at full speed (`source.realtime` is
False) is paced by inference instead, so a replay books every part.
inference workers (`workers`, default one): each takes one part, plus up to `batch_max - 1` more
if they are already waiting, classifies them in one call, saves defect snapshots and hands the
results to the writer. Batches are numbered as they are taken, so with several workers running
batches in parallel the writer still commits parts in capture order.
writer thread: commits every result waiting (group commit, see recorder.py) while the workers run
the next batches, so the fsync overlaps inference instead of adding to it.
`swap_classifier()` replaces the model between two batches: no part is lost or classified twice.

Several cameras (`cameras=`): one capture thread per camera, each with its own trigger, all feeding
the one queue with their camera, so the workers batch parts of every camera into one call of the
shared model; each part is booked under its camera's SKU. A camera that stalls or ends only stops
its own thread: a live camera never waits, and a replay waits only for queue space.

Why several single-threaded workers: a small CNN parallelises badly inside one runtime call (two
intra-op threads gave 1.37x one thread and burnt 46% more CPU in the shipped model's benchmark),
while two calls in parallel on two cores give nearly 2x. Runtimes release the GIL while they run.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from edge.capture.base import Frame, FrameSource
from edge.frame_queue import FrameQueue
from edge.metrics import Metrics, RateWindow
from edge.recorder import InspectedPart, record_parts
from edge.snapshots import SnapshotStore
from edge.trigger import EveryFrame, Trigger
from smartstock.errors import StoreError
from smartstock.store import Store
from smartstock.sync.payloads import new_event_id
from smartstock.vision.preprocess import crop_roi

logger = logging.getLogger(__name__)


class Verdict(Protocol):
    """One frame's result as the loop books it (smartstock.vision.classifier.Classification)."""

    label: str
    score: float
    scores: dict[str, float]
    is_defect: bool
    latency_ms: float
    margin: float                    # distance from the decision (small = unsure: snapshot as `uncertain`)
    heatmap: np.ndarray | None       # good-only detectors: where the part looks unlike the good ones


class Classifier(Protocol):
    """What the service uses of a defect model: smartstock.vision.classifier.DefectClassifier, the OTA
    wrappers around it (smartstock.ota.trial.ObservedModel, TrialModel) and the tests' fakes.

    Identity (`model_id`, `release`, `model_path`) goes into every inspection row and the status;
    `labels` and `thresholds` serve the set-threshold command, which assigns a whole new dict."""

    thresholds: dict[str, float]
    roi: tuple[int, int, int, int] | None

    @property
    def model_id(self) -> str: ...
    @property
    def release(self) -> int: ...
    @property
    def model_path(self) -> Path: ...
    @property
    def labels(self) -> list[str]: ...
    @property
    def provider(self) -> str: ...

    def prepare(self, image: np.ndarray) -> object:
        """What classify_batch takes in place of `image`, made ahead (preprocessed) in the capture thread."""
        ...

    def classify_batch(self, frames: Sequence[object]) -> Sequence[Verdict]:
        """One verdict per image or prepare() result."""
        ...


CAMERA_COUNTERS = ("frames_captured", "parts_triggered", "frames_dropped", "parts_inspected", "defects",
                   "capture_errors")


@dataclass
class Camera:
    """One camera the loop inspects: its source, trigger and SKU; counters are its own share of the totals.

    `error` is why this camera's last frame could not be taken (a frame the ROI no longer fits, a
    trigger failing on it), "" once a frame goes through again; only this camera's thread sees it.
    """

    id: str
    source: FrameSource
    sku: str
    trigger: Trigger = field(default_factory=EveryFrame)
    snapshots: SnapshotStore | None = None
    roi: tuple[int, int, int, int] | None = None   # crop before the model (None = the whole frame)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CAMERA_COUNTERS, 0))
    rate: RateWindow = field(default_factory=RateWindow)   # parts committed per second
    error: str = ""
    last_good_mono: float = field(default_factory=time.monotonic)  # last frame taken without an error

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The part of the frame the model sees; InputError when the ROI does not fit the frame."""
        return crop_roi(image, self.roi)

    def seconds_since_good_frame(self) -> float:
        return time.monotonic() - self.last_good_mono

    @property
    def defect_rate(self) -> float:
        n = self.counters["parts_inspected"]
        return self.counters["defects"] / n if n else 0.0


Queued = tuple[Camera, Frame, object]  # the camera, its frame (ROI-cropped) and the model's input made from it


def snapshot_reason(result: Verdict, uncertain_margin: float) -> str | None:
    """"uncertain" for a part scored within `uncertain_margin` of the decision (an operator's label
    teaches the model most there), "defect" for other defective parts, None for sure good parts."""
    if uncertain_margin > 0 and result.margin < uncertain_margin:
        return "uncertain"
    return "defect" if result.is_defect else None
Result = tuple[InspectedPart, float]  # an inspected part and its capture time (monotonic), on its way to the store


@dataclass
class LoopSettings:
    sku: str
    device_id: str
    events_topic: str
    queue_size: int = 16
    batch_max: int = 8
    batch_wait_s: float = 0.0          # wait this long for a batch to fill once its first part is there (GPUs)
    workers: int = 1                   # inference workers running batches in parallel (the classifier must be thread-safe)
    max_parts: int | None = None       # stop after this many committed parts (replays, tests)
    read_timeout_s: float = 0.5
    commit_interval_s: float = 0.02    # group commit window: results wait at most this long for their fsync
    # health goes red once this many commits in a row failed (one write that lost a lock race is no outage)
    store_failures_unhealthy: int = 3
    uncertain_margin: float = 0.0      # snapshot parts this close to the decision as `uncertain` (0 = off)
    prepare_in_capture: bool = False   # preprocess in each camera's capture thread (vision.preprocess_in_capture)


class InspectionLoop:
    def __init__(self, source: FrameSource | None, classifier: Classifier, store: Store, settings: LoopSettings, *,
                 trigger: Trigger | None = None, snapshots: SnapshotStore | None = None,
                 metrics: Metrics | None = None, on_batch: Callable[[list[InspectedPart]], None] | None = None,
                 cameras: Sequence[Camera] | None = None) -> None:
        """One camera (`source`, `trigger`, `snapshots`, booked as `settings.sku`), or several (`cameras`)."""
        if cameras is None:
            if source is None:
                raise ValueError("InspectionLoop needs a source or cameras")
            cameras = [Camera("cam1", source, settings.sku, trigger or EveryFrame(), snapshots)]
        if not cameras:
            raise ValueError("InspectionLoop needs at least one camera")
        self.cameras = list(cameras)
        self._by_id = {c.id: c for c in self.cameras}
        if len(self._by_id) != len(self.cameras):
            raise ValueError("camera ids must be unique")
        self.source = self.cameras[0].source    # the first camera (one-camera callers)
        self.store = store
        self.settings = settings
        self.snapshots = snapshots
        self.metrics = metrics or Metrics()
        self.on_batch = on_batch
        self.queue: FrameQueue[Queued] = FrameQueue(settings.queue_size)
        self._classifier = classifier
        self._swap_lock = threading.Lock()
        self._stop_capture = threading.Event()
        self._stop_worker = threading.Event()
        # (batch number, results); None wakes the writer when the last worker has ended
        self._results: queue.Queue[tuple[int, list[Result]] | None] = queue.Queue(maxsize=64)
        self.worker_finished = threading.Event()   # set when every worker has ended
        self._take_lock = threading.Lock()          # one worker takes a batch at a time: numbers follow capture order
        self._batches_taken = 0
        self._classified = 0                        # parts taken by the workers (counted when taken)
        self._workers_left = max(1, settings.workers)
        self.done = threading.Event()       # set when max_parts reached or a replay is fully processed
        self.capture_finished = threading.Event()
        self._handed_over = 0               # parts put into the queue minus parts dropped from it
        self._hand_lock = threading.Lock()   # the capture threads share the count above
        self._captures_left = len(self.cameras)
        self._committed = 0
        self.worker_error: str | None = None
        self.store_failures = 0             # commits failed in a row; the next one that succeeds resets it
        self.store_error = ""               # why the last commit failed
        self._threads: list[threading.Thread] = []      # capture threads first, then the workers and the writer
        self._n_capture = len(self.cameras)

    # -- control -----------------------------------------------------------------------------
    def start(self) -> None:
        workers = max(1, self.settings.workers)
        self._threads = [*(threading.Thread(target=self._capture_main, args=(cam,), daemon=True,
                                            name="capture" if len(self.cameras) == 1 else f"capture-{cam.id}")
                           for cam in self.cameras),
                         *(threading.Thread(target=self._worker_main, name=f"inference-{i}", daemon=True)
                           for i in range(workers)),
                         threading.Thread(target=self._writer_main, name="writer", daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop capturing, let the worker finish what is queued (drain), then return."""
        self._stop_capture.set()
        deadline = time.monotonic() + timeout
        for t in self._threads[:self._n_capture]:
            t.join(max(0.0, deadline - time.monotonic()))
        self._stop_worker.set()
        for t in self._threads[self._n_capture:]:  # the workers first: the writer ends after them, with their last results
            t.join(max(0.0, deadline - time.monotonic()))
        left = self.queue.clear()  # captured but never inspected: say how much
        if left:
            logger.warning("stopped with %d part(s) not inspected (drain timed out)", left)

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads[self._n_capture:])

    def store_failing(self) -> str | None:
        """Why the store is unhealthy (the last `store_failures_unhealthy` commits failed), else None.

        A batch that cannot be committed is counted (`store_errors`) and its parts are lost, so a store
        that keeps refusing writes must turn /healthz red rather than leave it green."""
        n = self.store_failures
        if n < max(1, self.settings.store_failures_unhealthy):
            return None
        return f"store writes failing ({n} batch(es) in a row): {self.store_error}"

    @property
    def classifier(self) -> Classifier:
        return self._classifier

    def swap_classifier(self, new: Classifier) -> Classifier:
        """Use `new` from the next batch on; returns the old one (the caller releases it)."""
        with self._swap_lock:
            old, self._classifier = self._classifier, new
        self.metrics.inc("classifier_swaps")
        logger.info("classifier swapped: %s -> %s", old.model_id, new.model_id)
        return old

    # -- capture -----------------------------------------------------------------------------
    def _capture_main(self, cam: Camera) -> None:
        """One camera's thread: crop, trigger and preprocess each part. A frame this camera cannot take
        (its ROI no longer fits after a resolution change, the trigger or preprocessing fails on it) is counted against the camera and skipped: the other cameras'
        threads and the shared workers never see it. Only a bug outside the per-frame work ends the thread."""
        s = self.settings
        try:
            while not self._stop_capture.is_set():
                if s.max_parts is not None and self._handed_over >= s.max_parts:
                    break
                frame = cam.source.read(s.read_timeout_s)
                if frame is None:
                    if cam.source.ended:
                        break
                    continue
                self.metrics.inc("frames_captured")
                cam.counters["frames_captured"] += 1
                try:
                    seen = cam.crop(frame.image)  # checked here, in this camera's thread, not in the shared batch
                    is_part = cam.trigger.is_part(frame.image)
                    model_input = self._prepare(seen) if is_part else None
                except Exception as e:  # noqa: BLE001 - this camera's frame only: count, log once, carry on
                    self._capture_failed(cam, e)
                    continue
                if cam.error:
                    logger.info("camera %s: frames are taken again (after %d capture error(s))", cam.id,
                                cam.counters["capture_errors"])
                    cam.error = ""
                cam.last_good_mono = time.monotonic()
                if not is_part:
                    continue
                self.metrics.inc("parts_triggered")
                cam.counters["parts_triggered"] += 1
                self._hand_over(cam, replace(frame, image=seen) if seen is not frame.image else frame, model_input)
        except Exception as e:  # noqa: BLE001 - a bug outside the per-frame work: the service restarts
            cam.error = f"capture thread failed: {type(e).__name__}: {e}"
            # worker_error makes App.alive() false, so the watchdog stops and systemd restarts the service
            # (a dead capture thread would otherwise leave a live-looking service that inspects nothing)
            self.worker_error = f"capture {cam.id}: {type(e).__name__}: {e}"
            logger.exception("capture thread of camera %s failed", cam.id)
        finally:
            with self._hand_lock:
                self._captures_left -= 1
                last = self._captures_left == 0
            if last:  # the other cameras keep feeding the queue until they end too
                self.capture_finished.set()
                self.queue.close()  # let the workers see the end without waiting for their timeout

    def _prepare(self, image: np.ndarray) -> object:
        """With `prepare_in_capture`, the model's input for a part, made here in the camera's capture
        thread (the model serving when the batch runs redoes it only if it wants other input: a swap):
        meant for a GPU, where the workers should only feed the model. Off by default: on a 2-core CPU
        it made one camera's capture thread (decode + preprocess) the bottleneck, 1,452 vs 2,500
        parts/s and frame-to-result p50 54 vs 16.5 ms (`python -m benchmarks edge`, same run settings)."""
        if not self.settings.prepare_in_capture:
            return image
        with self._swap_lock:
            clf = self._classifier
        return clf.prepare(image)

    def _capture_failed(self, cam: Camera, e: Exception) -> None:
        cam.counters["capture_errors"] += 1
        reason = f"{type(e).__name__}: {e}"
        if not cam.error:  # once per change, not per frame
            logger.warning("camera %s: frame skipped: %s (counted in capture_errors; the other cameras go on)",
                           cam.id, reason)
        cam.error = reason

    def _reserve(self, n: int) -> bool:
        """Count `n` (1 or -1) parts as handed over; False (nothing counted) once max_parts is reached,
        so several capture threads together hand over exactly max_parts."""
        with self._hand_lock:
            limit = self.settings.max_parts
            if n > 0 and limit is not None and self._handed_over >= limit:
                return False
            self._handed_over += n
            return True

    def _hand_over(self, cam: Camera, frame: Frame, model_input: object) -> None:
        item = (cam, frame, model_input)
        if not self._reserve(1):
            return
        if not cam.source.realtime:  # replay: wait for the workers rather than lose parts
            while not self._stop_capture.is_set():
                if self.queue.put_wait(item, 0.2):
                    return
            self._reserve(-1)
            return
        for lost, _, _ in self.queue.push_drop_oldest(item):  # the oldest went: the newest part is the one still in view
            self._reserve(-1)
            self.metrics.inc("frames_dropped")
            with self._hand_lock:  # the part may be another camera's: its own capture thread counts too
                lost.counters["frames_dropped"] += 1

    # -- inference ---------------------------------------------------------------------------
    def _worker_main(self) -> None:
        try:
            while True:
                seq, batch, clf = self._next_batch()
                if batch:
                    self._classify(seq, batch, clf)
                if self.settings.max_parts is not None and self._classified >= self.settings.max_parts:
                    break
                if not batch and self.capture_finished.is_set() and self.queue.qsize() == 0:
                    break
                if not batch and self._stop_worker.is_set():
                    break
        except Exception as e:  # noqa: BLE001 - the app sees worker_error and stops unhealthy
            self.worker_error = f"{type(e).__name__}: {e}"
            logger.exception("inference worker failed")
        finally:
            with self._take_lock:  # (the take lock also guards the count of running workers)
                self._workers_left -= 1
                last = self._workers_left == 0
            if last:
                self.worker_finished.set()
                try:
                    self._results.put_nowait(None)  # wake the writer so it ends without waiting for its timeout
                except queue.Full:
                    pass

    def _writer_main(self) -> None:
        s = self.settings
        held: dict[int, list[Result]] = {}  # results that arrived before an earlier batch
        next_seq = 0
        try:
            while True:
                try:
                    got = [self._results.get(timeout=0.2)]
                except queue.Empty:
                    got = []
                if got and s.commit_interval_s > 0:  # gather a little more: fewer fsyncs, less CPU taken from inference
                    self.worker_finished.wait(s.commit_interval_s)
                while True:
                    try:
                        got.append(self._results.get_nowait())
                    except queue.Empty:
                        break
                held.update(item for item in got if item is not None)
                items: list[Result] = []
                while next_seq in held:
                    items += held.pop(next_seq)
                    next_seq += 1
                finished = self.worker_finished.is_set() and self._results.empty()
                if finished:  # no batch is still running: whatever is held goes now, in order, gap or not
                    for seq in sorted(held):
                        items += held.pop(seq)
                if items:
                    self._commit(items)
                if finished:
                    break
        except Exception as e:  # noqa: BLE001 - as for the worker
            self.worker_error = f"writer: {type(e).__name__}: {e}"
            logger.exception("store writer failed")
        finally:
            self.done.set()

    def _next_batch(self) -> tuple[int, list[Queued], Classifier]:
        """(batch number, frames, the model for them); no frames when nothing came within 0.2 s.
        The model is chosen as the batch is taken, so a swap is one clean cut in capture order even
        while several workers run."""
        with self._take_lock:
            limit = self.settings.batch_max
            if self.settings.max_parts is not None:
                limit = min(limit, self.settings.max_parts - self._classified)
            batch = self.queue.take(limit, 0.2, self.settings.batch_wait_s) if limit > 0 else []
            with self._swap_lock:
                clf = self._classifier
            if not batch:
                return -1, [], clf
            seq = self._batches_taken
            self._batches_taken += 1
            self._classified += len(batch)
            return seq, batch, clf

    def _classify(self, seq: int, frames: list[Queued], clf: Classifier) -> None:
        """Classify one batch and hand it to the writer; a batch that fails is handed over empty, so
        the writer does not wait for it (the worker then ends with its error)."""
        out: list[Result] = []
        try:
            out = self._inspect(frames, clf)
        finally:
            self._hand_to_writer(seq, out)

    def _inspect(self, frames: list[Queued], clf: Classifier) -> list[Result]:
        """One call of the shared model for parts of every camera; each booked under its camera's SKU."""
        seen = [f.image for _, f, _ in frames]  # each camera's ROI, cropped in its capture thread
        results = clf.classify_batch([model_input for _, _, model_input in frames])
        model_id, release = clf.model_id, clf.release
        out = []
        for i, ((cam, f, _), r) in enumerate(zip(frames, results)):
            eid = new_event_id()
            # the snapshot shows what the model saw (the camera's ROI), so a heat map lands where it was made
            reason = snapshot_reason(r, self.settings.uncertain_margin) if cam.snapshots is not None else None
            snap = (cam.snapshots.save(seen[i], eid, heatmap=r.heatmap, roi=clf.roi)
                    if reason else None)
            out.append((InspectedPart(event_id=eid, ts=f.ts, sku=cam.sku, label=r.label, score=float(r.score),
                                      is_defect=bool(r.is_defect), latency_ms=float(r.latency_ms),
                                      model_id=model_id, model_release=release, frame_id=f.index, snapshot=snap,
                                      source=cam.id, snapshot_reason=reason if snap else None,
                                      scores=r.scores if snap else None),
                        f.t_mono))
        return out

    def _hand_to_writer(self, seq: int, out: list[Result]) -> None:
        while not self.done.is_set():  # bounded: a slow disk slows inference down instead of growing memory
            try:
                self._results.put((seq, out), timeout=0.5)
                return
            except queue.Full:
                continue
        if out:
            logger.error("store writer has stopped: %d result(s) not stored", len(out))

    def _commit(self, items: list[Result]) -> None:
        parts = [p for p, _ in items]
        try:
            record_parts(self.store, parts, device_id=self.settings.device_id, topic=self.settings.events_topic)
        except (StoreError, sqlite3.Error, OSError) as e:  # disk full or locked: count, log once, carry on
            self.metrics.inc("store_errors")
            self.store_failures += 1
            self.store_error = str(e)
            if self.store_failures == 1:
                logger.error("could not store %d inspection(s): %s (counted in store_errors; logged again "
                             "when writes succeed)", len(parts), e)
            return
        if self.store_failures:
            logger.warning("store writes succeed again after %d failed batch(es)", self.store_failures)
            self.store_failures = 0
        self._committed += len(parts)
        for p in parts:  # the writer is the one thread counting these
            counters = self._by_id[p.source].counters
            counters["parts_inspected"] += 1
            counters["defects"] += p.is_defect
        now = time.monotonic()
        for cam_id, n in Counter(p.source for p in parts).items():
            self._by_id[cam_id].rate.add(n, now)
        self.metrics.parts_done([p.latency_ms for p in parts], [(now - t) * 1000.0 for _, t in items],
                                sum(p.is_defect for p in parts))
        if self.on_batch is not None:
            self.on_batch(parts)

