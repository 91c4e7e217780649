"""The inspection loop on a real SQLite store with fakes of our own source/classifier interfaces:
bookings are atomic, drop-oldest under a slow consumer, batching, trigger modes, snapshot quota,
swapping the classifier between frames."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from edge.loop import InspectionLoop, LoopSettings
from edge.metrics import Metrics, percentile, prometheus_text
from edge.snapshots import SnapshotStore
from edge.trigger import EveryNth, MotionTrigger
from smartstock.store.stock import levels
from tests.edge_fakes import FakeClassifier, FakeFrameSource, flat_images


def _settings(**kw) -> LoopSettings:
    return LoopSettings(sku="SKU-1", device_id="dev1", events_topic="smartstock/p/l/dev1/events/inspection", **kw)


def _run(loop: InspectionLoop, timeout: float = 20.0) -> None:
    loop.start()
    assert loop.done.wait(timeout), "loop did not finish"
    loop.stop()


def test_every_part_is_booked_atomically(store):
    values = [200 if i % 4 == 0 else 10 for i in range(40)]  # every 4th part defective
    loop = InspectionLoop(FakeFrameSource(flat_images(values)), FakeClassifier(), store, _settings(queue_size=4, batch_max=4))
    _run(loop)
    n_insp = store.query_one("SELECT COUNT(*) FROM inspections")[0]
    lv = levels(store.conn)["SKU-1"]
    assert n_insp == 40 and lv["produced"] == 30 and lv["scrapped"] == 10
    # every inspection has exactly one movement and one outbox event with the same id
    orphans = store.query_one("SELECT COUNT(*) FROM inspections i LEFT JOIN stock_movements m ON m.ref = i.event_id "
                              "WHERE m.id IS NULL")[0]
    assert orphans == 0
    events = [json.loads(r[0]) for r in store.query("SELECT payload FROM outbox ORDER BY id")]
    assert len(events) == 40
    ids = {r[0] for r in store.query("SELECT event_id FROM inspections")}
    assert {e["event_id"] for e in events} == ids
    assert {e["device_id"] for e in events} == {"dev1"} and all(e["v"] == 1 for e in events)
    assert loop.metrics.snapshot()["frames_dropped"] == 0


def test_max_parts_stops_exactly(store):
    loop = InspectionLoop(FakeFrameSource(flat_images([10] * 50)), FakeClassifier(), store, _settings(max_parts=17, batch_max=8))
    _run(loop)
    assert store.query_one("SELECT COUNT(*) FROM inspections")[0] == 17


def test_slow_consumer_drops_the_oldest_and_counts(store):
    clf = FakeClassifier(delay_s=0.02)  # 50 parts/s against a 400 fps camera
    src = FakeFrameSource(flat_images(list(range(100))), fps=400)
    loop = InspectionLoop(src, clf, store, _settings(queue_size=4, batch_max=1))
    _run(loop)
    snap = loop.metrics.snapshot()
    inspected = store.query_one("SELECT COUNT(*) FROM inspections")[0]
    assert snap["frames_dropped"] > 0
    assert inspected + snap["frames_dropped"] == 100  # every frame either inspected or counted as dropped
    assert snap["parts_inspected"] == inspected
    # the newest frame always survives: the last frame is among the inspected ones
    assert store.query_one("SELECT MAX(frame_id) FROM inspections")[0] == 100


def test_worker_batches_when_behind(store):
    clf = FakeClassifier(delay_s=0.005)
    loop = InspectionLoop(FakeFrameSource(flat_images([10] * 60)), clf, store, _settings(queue_size=16, batch_max=8))
    _run(loop)
    assert max(clf.calls) > 1 and max(clf.calls) <= 8 and sum(clf.calls) == 60


def test_swap_classifier_between_frames_loses_nothing(store):
    old, new = FakeClassifier(model_id="m1", delay_s=0.002), FakeClassifier(model_id="m2", release=2, delay_s=0.002)
    loop = InspectionLoop(FakeFrameSource(flat_images([10] * 200), fps=500), old, store, _settings(queue_size=256, batch_max=4))
    loop.start()
    while store.query_one("SELECT COUNT(*) FROM inspections")[0] < 20:
        loop.done.wait(0.01)
    assert loop.swap_classifier(new) is old
    assert loop.done.wait(20)
    loop.stop()
    rows = store.query("SELECT model_id, model_release FROM inspections ORDER BY frame_id")
    ids = [r[0] for r in rows]
    assert len(rows) == 200 - loop.metrics.snapshot()["frames_dropped"] == 200
    first_new = ids.index("m2")
    assert set(ids[:first_new]) == {"m1"} and set(ids[first_new:]) == {"m2"}  # one clean switch
    assert rows[-1][1] == 2


def test_stop_drains_the_queue(store):
    clf = FakeClassifier(delay_s=0.01)
    loop = InspectionLoop(FakeFrameSource(flat_images([10] * 1000), fps=1000), clf, store, _settings(queue_size=8, batch_max=1))
    loop.start()
    loop.done.wait(0.3)
    loop.stop(timeout=5)
    assert loop.queue.qsize() == 0
    snap = loop.metrics.snapshot()
    assert store.query_one("SELECT COUNT(*) FROM inspections")[0] == snap["parts_triggered"] - snap["frames_dropped"]


def test_nth_trigger():
    t = EveryNth(3)
    assert [t.is_part(np.zeros((4, 4, 3), np.uint8)) for _ in range(7)] == [True, False, False, True, False, False, True]


def _scene(part_x: int | None) -> np.ndarray:
    img = np.full((64, 64, 3), 30, np.uint8)
    if part_x is not None:
        img[20:44, max(0, part_x):max(0, part_x + 24)] = 220
    return img


def test_motion_trigger_counts_a_slow_part_once():
    t = MotionTrigger(threshold=5.0, settle_frames=2)
    # empty belt, a part slides in over 6 frames, stays, belt empty again, a second part arrives
    frames = [_scene(None)] * 4 + [_scene(x) for x in (-20, -14, -8, -2, 4, 10)] + [_scene(10)] * 5 \
        + [_scene(None)] * 4 + [_scene(x) for x in (-16, -8, 0)] + [_scene(0)] * 4
    hits = [t.is_part(f) for f in frames]
    assert sum(hits) == 2  # part 1 once it is in place, part 2; the belt emptying is not a part
    # the hits are on still frames right after motion, never during it
    for i, h in enumerate(hits):
        if h:
            assert np.array_equal(frames[i], frames[i - 1])


def test_motion_trigger_with_roi_ignores_changes_outside():
    t = MotionTrigger(threshold=5.0, roi=(0, 0, 16, 16))
    moving_outside = [_scene(x) for x in range(20, 40, 2)]  # part stays right of x=16... mostly
    img = [f.copy() for f in moving_outside]
    for f in img:
        f[:16, :16] = 30
    assert not any(t.is_part(f) for f in img)


def test_snapshot_quota_deletes_oldest_first(tmp_path):
    snaps = SnapshotStore(tmp_path / "snap", max_bytes=30_000)
    rng = np.random.default_rng(0)
    names = [snaps.save(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), f"e{i:03d}") for i in range(40)]
    on_disk = sorted(p.name for p in (tmp_path / "snap").glob("*.jpg"))
    assert sum((tmp_path / "snap" / n).stat().st_size for n in on_disk) <= 30_000
    assert snaps.deleted > 0 and on_disk == sorted(names[-len(on_disk):])  # the newest survive
    # a restart re-reads the folder and keeps the quota
    again = SnapshotStore(tmp_path / "snap", max_bytes=10_000)
    assert again.bytes <= 10_000
    assert again.path_of(on_disk[-1]) is not None  # the newest is still there


def test_snapshot_names_cannot_escape(tmp_path):
    snaps = SnapshotStore(tmp_path / "snap", max_bytes=1_000_000)
    name = snaps.save(np.zeros((8, 8, 3), np.uint8), "abc")
    assert snaps.path_of(name) is not None
    for bad in ("../x.jpg", "/etc/passwd", "..", ".hidden.jpg", "a/b.jpg", "x.png"):
        assert snaps.path_of(bad) is None


def test_defect_snapshots_are_linked_from_inspections(store, tmp_path):
    snaps = SnapshotStore(tmp_path / "snap", max_bytes=10_000_000)
    loop = InspectionLoop(FakeFrameSource(flat_images([200, 10, 200])), FakeClassifier(), store, _settings(), snapshots=snaps)
    _run(loop)
    rows = store.query("SELECT is_defect, snapshot FROM inspections ORDER BY frame_id")
    assert [bool(r[1]) for r in rows] == [True, False, True]
    assert all(snaps.path_of(r[1]) for r in rows if r[1])


def test_prometheus_text_and_percentiles():
    m = Metrics()
    m.parts_done([1.0, 2.0, 3.0], [5.0, 6.0, 50.0], defects=1)
    text = prometheus_text({**m.snapshot(), "queue_depth": 2}, labels={"device_id": "d1"})
    assert 'smartstock_parts_inspected_total{device_id="d1"} 3' in text
    assert 'smartstock_queue_depth{device_id="d1"} 2' in text
    assert 'smartstock_latency_seconds{device_id="d1",quantile="0.99"} 0.05' in text
    assert percentile([1, 2, 3, 4], 50) in (2, 3) and percentile([], 99) == 0.0


# --- several inference workers ------------------------------------------------------------------------------

class JitteryClassifier(FakeClassifier):
    """Takes a random 0-8 ms per batch, so parallel batches finish out of order; records the most
    batches it ever ran at once, and can fail on one chosen call."""

    def __init__(self, *, fail_on_call: int | None = None, seed: int = 0, **kw) -> None:
        super().__init__(**kw)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self.running = self.most_at_once = self.n_calls = 0
        self.fail_on_call = fail_on_call
        self.failed_batch: int | None = None

    def classify_batch(self, frames):
        with self._lock:
            self.n_calls += 1
            call = self.n_calls
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            delay = float(self._rng.uniform(0, 0.008))
        try:
            threading.Event().wait(delay)
            if call == self.fail_on_call:
                self.failed_batch = len(frames)
                raise RuntimeError("model crashed")
            return super().classify_batch(frames)
        finally:
            with self._lock:
                self.running -= 1


def test_parallel_workers_commit_every_part_in_capture_order(store):
    values = [200 if i % 5 == 0 else 10 for i in range(300)]
    clf = JitteryClassifier()
    loop = InspectionLoop(FakeFrameSource(flat_images(values)), clf, store,
                          _settings(queue_size=16, batch_max=4, workers=3))
    _run(loop)
    assert clf.most_at_once >= 2  # the batches really ran in parallel
    frame_ids = [r[0] for r in store.query("SELECT frame_id FROM inspections ORDER BY id")]
    assert frame_ids == list(range(1, 301))  # committed in capture order although finished out of order
    events = [json.loads(r[0])["frame_id"] for r in store.query("SELECT payload FROM outbox ORDER BY id")]
    assert events == list(range(1, 301))
    lv = levels(store.conn)["SKU-1"]
    assert (lv["produced"], lv["scrapped"]) == (240, 60)
    assert loop.metrics.snapshot()["parts_inspected"] == 300


def test_parallel_workers_swap_models_in_one_clean_cut(store):
    old, new = JitteryClassifier(model_id="m1", seed=1), JitteryClassifier(model_id="m2", release=2, seed=2)
    loop = InspectionLoop(FakeFrameSource(flat_images([10] * 400), fps=2000), old, store,
                          _settings(queue_size=512, batch_max=4, workers=3))
    loop.start()
    while store.query_one("SELECT COUNT(*) FROM inspections")[0] < 40:
        loop.done.wait(0.01)
    loop.swap_classifier(new)
    assert loop.done.wait(30)
    loop.stop()
    ids = [r[0] for r in store.query("SELECT model_id FROM inspections ORDER BY frame_id")]
    assert len(ids) == 400
    first_new = ids.index("m2")
    assert set(ids[:first_new]) == {"m1"} and set(ids[first_new:]) == {"m2"}


def test_parallel_workers_stop_exactly_at_max_parts(store):
    loop = InspectionLoop(FakeFrameSource(flat_images([10] * 100)), JitteryClassifier(), store,
                          _settings(max_parts=37, batch_max=8, workers=3))
    _run(loop)
    assert store.query_one("SELECT COUNT(*) FROM inspections")[0] == 37


def test_a_failed_batch_does_not_hold_back_the_others(store):
    """One worker's batch fails: the writer does not wait for it forever, everything else is committed,
    and the loop reports the failure (the app then stops unhealthy)."""
    clf = JitteryClassifier(fail_on_call=3)
    loop = InspectionLoop(FakeFrameSource(flat_images([10] * 120)), clf, store,
                          _settings(queue_size=16, batch_max=4, workers=2))
    loop.start()
    assert loop.done.wait(20), "the writer waited for a batch that never came"
    loop.stop()
    assert loop.worker_error and "model crashed" in loop.worker_error and not loop.alive()
    committed = store.query_one("SELECT COUNT(*) FROM inspections")[0]
    assert committed == 120 - clf.failed_batch  # the other worker carried on to the end
    frame_ids = [r[0] for r in store.query("SELECT frame_id FROM inspections ORDER BY id")]
    assert frame_ids == sorted(frame_ids)


def test_snapshots_saved_from_several_workers_keep_the_quota_and_the_count(tmp_path):
    snaps = SnapshotStore(tmp_path / "snap", max_bytes=60_000)
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(8)]

    def work(w: int) -> None:
        for i in range(40):
            snaps.save(images[i % 8], f"w{w}e{i:03d}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "snap").glob("*.jpg"))
    assert on_disk == snaps.bytes <= 60_000  # the running total is exact although four threads saved at once
    assert snaps.failed == 0 and snaps.deleted > 0


def test_parts_preprocessed_in_the_capture_thread_score_exactly_as_in_the_worker(tmp_path, monkeypatch):
    """The capture thread makes the model's input (prepare_in_capture, the default): every part gets
    the very score it got when the inference workers preprocessed it, on the real shipped model, and
    the workers then preprocess nothing."""
    import cv2

    import smartstock.vision.classifier as classifier_mod
    from smartstock.store import open_store
    from smartstock.vision.classifier import DefectClassifier, default_model_path

    in_workers = []  # preprocess_batch is what classify_batch runs on frames not prepared for it
    real = classifier_mod.preprocess_batch
    monkeypatch.setattr(classifier_mod, "preprocess_batch", lambda *args: in_workers.append(1) or real(*args))

    clf = DefectClassifier.load(default_model_path(), threads=1, providers=("cpu",))
    parts = sorted((Path(__file__).resolve().parents[1] / "edge" / "sample_parts").glob("part-*.png"))[:40]
    frames = [cv2.resize(cv2.imread(str(p)), (200, 160)) for p in parts]  # 200x160: resized to the model's 96x96
    scores, worker_calls = {}, {}
    for prepared in (True, False):
        in_workers.clear()
        with open_store(tmp_path / str(prepared)) as store:
            loop = InspectionLoop(FakeFrameSource(frames), clf, store, LoopSettings(
                sku="S", device_id="d", events_topic="t", batch_max=8, workers=2, prepare_in_capture=prepared))
            loop.start()
            assert loop.done.wait(60)
            loop.stop()
            scores[prepared] = [tuple(r) for r in store.query("SELECT frame_id, label, score FROM inspections ORDER BY frame_id")]
        worker_calls[prepared] = len(in_workers)
    assert len(scores[True]) == 40 and scores[True] == scores[False]
    assert worker_calls[True] == 0 and worker_calls[False] > 0
    assert {label for _, label, _ in scores[True]} == set(clf.labels)  # both kinds of part were seen


def test_a_crashed_capture_thread_makes_the_loop_unhealthy(store):
    """A bug outside the per-frame work ends the camera's thread: the loop must say so (App.alive() is
    false, the watchdog stops and systemd restarts the service), not end as if the camera had finished."""

    class Exploding(FakeFrameSource):
        def read(self, timeout):
            if self.i == 5:
                raise RuntimeError("driver bug")
            return super().read(timeout)

    loop = InspectionLoop(Exploding(flat_images([10] * 20)), FakeClassifier(), store, _settings())
    loop.start()
    assert loop.done.wait(20)
    loop.stop()
    assert loop.worker_error and "driver bug" in loop.worker_error and not loop.alive()
