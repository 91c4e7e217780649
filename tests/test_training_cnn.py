"""Training side: synthetic generator, dataset loading and splits, evaluation and export outputs.

TensorFlow runs only in subprocesses (the session fixture trains the tiny model); these tests read
what it wrote or exercise the TensorFlow-free parts of training/.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from smartstock.errors import InputError
from smartstock.vision.images import read_image
from smartstock.vision.manifest import load_manifest
from tests.conftest import ROOT
from tests.fixtures.models import make_release
from training.data import class_weights, detect_color, load_dataset, stratified_split
from training.synth import DEFECT_KINDS, generate, make_image


def test_synth_is_reproducible_by_seed_and_writes_class_folders(tmp_path):
    a = generate(tmp_path / "a", 24, seed=5, size=40)
    generate(tmp_path / "b", 24, seed=5, size=40)
    generate(tmp_path / "c", 24, seed=6, size=40)
    assert a == {"ok": 12, **{k: 12 // 5 + (1 if i < 12 % 5 else 0) for i, k in enumerate(DEFECT_KINDS)}}
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 24
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    same = sum((tmp_path / "a" / f).read_bytes() == (tmp_path / "c" / f.parent / f.name.replace("_5_", "_6_")).read_bytes()
               for f in files)
    assert same == 0


def test_synth_defects_change_the_surface():
    for kind in DEFECT_KINDS:
        ok = make_image("ok", np.random.default_rng([1, 2]), 64).astype(int)
        bad = make_image(kind, np.random.default_rng([1, 2]), 64).astype(int)
        assert ok.shape == bad.shape == (64, 64)
        assert np.abs(ok - bad).max() >= 15, kind  # the defect is visible against the same surface
    colour = make_image("hole", np.random.default_rng(0), 32, color=True)
    assert colour.shape == (32, 32, 3) and detect_color([colour]) == "bgr"


def test_synth_cli(tmp_path):
    p = subprocess.run([sys.executable, "-m", "training.synth", "--out", str(tmp_path), "--n", "12", "--classes",
                        "binary", "--size", "32"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert sorted(d.name for d in tmp_path.iterdir()) == ["defect", "ok"]
    assert read_image(next((tmp_path / "defect").iterdir())).shape == (32, 32)


def test_stratified_split_keeps_every_class_in_every_part():
    y = np.array([0] * 50 + [1] * 7 + [2] * 3)
    tr, va, te = stratified_split(y, (0.2, 0.2), seed=1)
    assert len(set(tr) | set(va) | set(te)) == len(y) == len(tr) + len(va) + len(te)
    for part in (tr, va, te):
        assert set(y[part]) == {0, 1, 2}
    w = class_weights(y, 3)
    assert w[2] > w[1] > w[0]


def test_load_dataset_reads_through_the_device_preprocess(tmp_path):
    generate(tmp_path, 30, seed=2, size=50, classes="binary", color=True)
    (tmp_path / "ok" / "corrupt.png").write_bytes(b"nope")
    ds = load_dataset(tmp_path, image_size=24, seed=0)
    assert ds.spec.color == "bgr" and ds.spec.shape == [-1, 24, 24, 3]
    assert ds.train.x.dtype == np.uint8 and ds.train.x.shape[1:] == (24, 24, 3)
    assert len(ds.train.y) + len(ds.val.y) + len(ds.test.y) == 30
    assert ds.labels == ["defect", "ok"] and ds.defect_labels == ["defect"]
    assert len(ds.skipped) == 1 and "corrupt.png" in ds.skipped[0]


def test_load_dataset_errors(tmp_path):
    generate(tmp_path / "one", 6, seed=0, size=32, classes="binary", ok_fraction=1.0)
    with pytest.raises(InputError, match="need at least 2"):
        load_dataset(tmp_path / "one")
    generate(tmp_path / "nogood", 10, seed=0, size=32, ok_fraction=0.0, kinds=("hole", "crack"))
    with pytest.raises(InputError, match="no class folder for good parts"):
        load_dataset(tmp_path / "nogood")


def test_train_cli_refuses_a_one_class_folder_quickly(cli, tmp_path):
    """One defect class and no good parts cannot train a classifier (an ok/-only folder trains a good-only
    detector instead: tests/test_goodonly.py)."""
    generate(tmp_path / "gen", 6, seed=0, size=32, ok_fraction=1.0)
    (tmp_path / "data").mkdir()
    (tmp_path / "gen" / "ok").rename(tmp_path / "data" / "scratch")
    r = cli("train", "cnn", "--data", tmp_path / "data", "--out", tmp_path / "out")
    assert r.rc == 3, r.err
    assert "need at least 2" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "out").exists()


def test_training_wrote_evaluation_and_parity(defect_model_dir):
    ev = json.loads((defect_model_dir / "evaluation.json").read_text())
    assert ev["split"] == "test" and ev["labels"] == ["hole", "ok", "scratch"]
    assert np.array(ev["confusion"]).sum() == ev["images"] > 0
    assert set(ev["per_class"]) == {"hole", "ok", "scratch"}
    assert {"roc_auc", "threshold_for_recall", "defect_recall", "thresholds", "flops"} <= set(ev)
    assert ev["accuracy"] > 0.5  # a real (if tiny) model: far better than always guessing "ok" on a 3-class set
    assert set(ev["parity"]) == {"onnx", "tflite", "tflite_int8"}
    assert "accuracy:" in (defect_model_dir / "evaluation.txt").read_text()
    m = load_manifest(defect_model_dir)
    assert m.metrics["accuracy"] == ev["accuracy"]
    assert all(0.05 <= t <= 0.5 for t in m.thresholds.values()) and set(m.thresholds) == {"hole", "scratch"}


def test_make_release_gives_a_valid_second_release(defect_model_dir, tmp_path):
    from smartstock.vision import DefectClassifier

    dst = make_release(defect_model_dir, tmp_path / "r2", release=2)
    m1, m2 = load_manifest(defect_model_dir), load_manifest(dst)
    assert m2.release == 2 and m1.release == 1
    assert m2.artifacts == m1.artifacts and m2.to_bytes() != m1.to_bytes()
    assert DefectClassifier.load(dst / "defect_int8.tflite").release == 2
    shutil.rmtree(dst)
