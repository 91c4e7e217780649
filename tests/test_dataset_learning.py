"""Learning from the line: near-threshold parts are snapshotted as `uncertain` with their scores, an
operator labels snapshots (CLI and MQTT `cmd/label`, validated as hostile input), and `dataset export`
writes a class folder that training reads. Real SQLite, real ONNX Runtime on a tiny exported model."""

from __future__ import annotations

import json

import cv2
import pytest

from edge.loop import InspectionLoop, LoopSettings
from edge.snapshots import SnapshotStore
from smartstock.errors import InputError
from smartstock.store.snapshots import FOLDER, label_snapshot, recent_uncertain
from smartstock.sync.inbound import parse_label
from smartstock.vision.classifier import DefectClassifier
from smartstock.vision.manifest import load_manifest
from tests.edge_fakes import FakeFrameSource, flat_images
from tests.fixtures.ota import make_model_dir

# The tiny model's P(defect) is sigmoid(0.2 * (mean brightness - 100)): 10 is surely good, 200 surely
# defective, 98/100/102 within 0.1 of the 0.5 threshold.
SURE_GOOD, NEAR, SURE_BAD = [10] * 4, [98, 100, 102], [200] * 3


def _inspect(store, state_dir, tmp_path, values, *, margin=0.2, quota=10_000_000):
    clf = DefectClassifier.load(make_model_dir(tmp_path / "model"))
    snaps = SnapshotStore(state_dir / FOLDER, quota)
    loop = InspectionLoop(FakeFrameSource(flat_images(values)), clf, store,
                          LoopSettings(sku="SKU-1", device_id="dev1", events_topic="t/events", batch_max=4,
                                       uncertain_margin=margin), snapshots=snaps)
    loop.start()
    assert loop.done.wait(20), "loop did not finish"
    loop.stop()
    return snaps


def _rows(store):
    return store.query("SELECT s.event_id, s.reason, s.label, s.scores, s.file, i.snapshot FROM snapshots s "
                       "JOIN inspections i ON i.event_id = s.event_id ORDER BY s.ts, s.event_id")


def test_near_threshold_parts_are_saved_as_uncertain_with_their_scores(store, state_dir, tmp_path):
    snaps = _inspect(store, state_dir, tmp_path, SURE_GOOD + NEAR + SURE_BAD)
    rows = _rows(store)
    assert sorted(r["reason"] for r in rows) == ["defect"] * 3 + ["uncertain"] * 3  # sure good parts: no snapshot
    for r in rows:
        scores = json.loads(r["scores"])
        assert set(scores) == {"ok", "defect"} and abs(sum(scores.values()) - 1) < 1e-3
        assert r["file"] == r["snapshot"] and snaps.path_of(r["file"]) is not None
        if r["reason"] == "uncertain":
            assert abs(scores["defect"] - 0.5) < 0.2
    page = recent_uncertain(store.conn, 10)
    assert len(page) == 3 and {u["label"] for u in page} <= {"ok", "defect"} and page[0]["ts"] >= page[-1]["ts"]


def test_uncertain_snapshots_off_and_within_the_quota(store, state_dir, tmp_path):
    _inspect(store, state_dir, tmp_path, SURE_GOOD + NEAR, margin=0.0)
    assert [r["reason"] for r in _rows(store)] == ["defect", "defect"]  # 100, 102 reach 0.5; 98 is good, unsaved
    snaps = _inspect(store, state_dir, tmp_path / "b", NEAR * 10, quota=3000)
    assert snaps.bytes <= 3000 and snaps.deleted > 0  # uncertain parts share the defect snapshots' quota


def test_label_is_validated_as_hostile_input(store, state_dir, tmp_path):
    _inspect(store, state_dir, tmp_path, NEAR)
    sid = _rows(store)[0]["event_id"]
    assert parse_label({"id": sid, "label": "scratch"}) == (sid, "scratch")
    for bad in ({"id": sid, "label": "../../etc"}, {"id": sid, "label": "ok/x"}, {"id": sid, "label": ""},
                {"id": sid, "label": "x" * 33}, {"id": sid, "label": 5}, {"id": "../" + sid, "label": "ok"},
                {"id": sid.upper(), "label": "ok"}, {"id": sid, "label": "ok", "path": "/tmp"}, {"label": "ok"}):
        with pytest.raises(InputError):
            parse_label(bad)
    with pytest.raises(InputError, match="no snapshot with id"):
        label_snapshot(store, "0" * 32, "ok")
    assert label_snapshot(store, sid, "ok", by="mqtt")["label"] == "ok"
    assert label_snapshot(store, sid, "scratch")["label"] == "scratch"  # the last word counts


def test_cli_label_and_export_make_a_class_folder_for_training(cli, tmp_path):
    from smartstock.store import open_store
    from training.data import load_dataset

    state = tmp_path / "cli-state"
    state.mkdir()
    with open_store(state) as store:
        _inspect(store, state, tmp_path, NEAR * 2 + SURE_BAD * 2)
        rows = _rows(store)
    assert len(rows) == 12
    for i, r in enumerate(rows):  # the operator's verdicts: near-threshold parts were good, the rest scratches
        got = cli("dataset", "label", r["event_id"], "ok" if r["reason"] == "uncertain" else "scratch")
        assert got.rc == 0, got.err
    bad = cli("dataset", "label", rows[0]["event_id"], "../evil")
    assert bad.rc == 3 and "label must be" in bad.err and "Traceback" not in bad.err
    assert cli("dataset", "label", "f" * 32, "ok").rc == 3
    # a quota-deleted file is skipped, not an error (a scratch one: rows in the same millisecond come in
    # event-id order, so rows[-1] is not always one of the last parts)
    (state / FOLDER / next(r for r in rows if r["reason"] != "uncertain")["file"]).unlink()
    out = tmp_path / "export"
    got = cli("dataset", "export", "--since", "24h", "--out", out)
    assert got.rc == 0, got.err
    assert "1 labelled snapshot(s) no longer on disk" in got.out
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["ok", "scratch"]
    assert len(list((out / "ok").glob("*.jpg"))) == 6 and len(list((out / "scratch").glob("*.jpg"))) == 5
    assert cv2.imread(str(next((out / "ok").glob("*.jpg")))) is not None
    index = json.loads((out / "export.json").read_text())
    assert {e["reason"] for e in index["images"]} == {"uncertain", "defect"}
    ds = load_dataset(out, image_size=32, val_fraction=0.2, test_fraction=0.2)  # what `train cnn` reads
    assert ds.labels == ["ok", "scratch"] and ds.defect_labels == ["scratch"]
    assert cli("dataset", "export", "--since", "yesterday", "--out", out).rc == 2
    later = cli("dataset", "export", "--since", "2999-01-01", "--out", tmp_path / "empty")
    assert later.rc == 0 and "exported 0" in later.out
    trained = cli("train", "cnn", "--data", out, "--out", tmp_path / "retrained", "--image-size", "32", "--epochs", "1",
                  "--restarts", "0", "--accept-weak", timeout=900, SMARTSTOCK_TRAIN_THREADS="2")
    assert trained.rc == 0, trained.err[-3000:]  # `train cnn` takes the exported folder as it is
    assert load_manifest(tmp_path / "retrained").labels == ["ok", "scratch"]

