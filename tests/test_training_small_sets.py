"""`smartstock train cnn` on small, imbalanced, unlearnable and defect-type-only sets (issue 14).

Each test runs the real command in a subprocess (TensorFlow never loads in the pytest process) on a
small generated set, then checks what it wrote with the device-side code (no TensorFlow).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from smartstock.ota.keys import generate_keypair, load_private_key
from smartstock.ota.kinds import DefectClassifierKind
from smartstock.ota.refusal import UpdateRefused
from smartstock.ota.sign import sign_model
from smartstock.vision.classifier import DefectClassifier
from smartstock.vision.images import read_image
from smartstock.vision.manifest import load_manifest
from training.synth import generate_counts

FAST = {"SMARTSTOCK_TRAIN_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _train(cli, data, out, *extra):
    return cli("train", "cnn", "--data", data, "--out", out, *extra, timeout=900, **FAST)


def test_small_imbalanced_set_with_parts_of_varying_size_trains_to_a_fit_model(cli, tmp_path):
    # 35-image defect classes beside 150 good parts (10 defects in the test split: one miss still meets
    # the 0.9 floor), sides 40-72 px letterboxed to 48 px squares
    generate_counts(tmp_path / "data", {"ok": 150, "hole": 35, "scratch": 35}, seed=4, sizes=(40, 72))
    r = _train(cli, tmp_path / "data", tmp_path / "out", "--image-size", "48", "--epochs", "12")
    assert r.rc == 0, r.err[-3000:]
    ev = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert ev["fit_for_use"] is True and ev["fitness"]["reasons"] == []
    assert ev["defect_recall"] >= 0.9 and ev["input"]["fit"] == "letterbox"
    m = load_manifest(tmp_path / "out")
    assert m.metrics["fit_for_use"] is True and m.input.fit == "letterbox" and m.input.shape == [-1, 48, 48, 1]
    # the device reads the odd-sized originals through the same letterbox and finds the defects
    clf = DefectClassifier.load(tmp_path / "out" / "defect.onnx")
    holes = [read_image(p) for p in sorted((tmp_path / "data" / "hole").glob("*.png"))]
    assert len({h.shape for h in holes}) > 1
    assert np.mean([c.is_defect for c in clf.classify_batch(holes)]) >= 0.8


def test_unlearnable_set_exits_non_zero_and_accept_weak_writes_a_model_ota_refuses(cli, tmp_path):
    # random labels: the same good surfaces split at random into ok/ and defect/
    generate_counts(tmp_path / "src", {"ok": 240}, seed=9, sizes=(24, 24))
    files = sorted((tmp_path / "src" / "ok").glob("*.png"))
    for i, f in enumerate(np.random.default_rng(0).permutation(len(files))):
        d = tmp_path / "data" / ("ok" if i % 2 else "defect")
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(files[f], d / files[f].name)
    args = ("--image-size", "24", "--epochs", "2", "--restarts", "0")
    r = _train(cli, tmp_path / "data", tmp_path / "weak", *args)
    assert r.rc == 4, r.err[-3000:]
    assert "UNFIT MODEL, not exported" in r.err and "Traceback" not in r.err
    assert "below the floor" in r.err or "no better than chance" in r.err
    ev = json.loads((tmp_path / "weak" / "evaluation.json").read_text())
    assert ev["fit_for_use"] is False and ev["fitness"]["reasons"]
    assert not (tmp_path / "weak" / "defect.onnx").exists() and not (tmp_path / "weak" / "manifest.json").exists()

    r = _train(cli, tmp_path / "data", tmp_path / "accepted", *args, "--accept-weak")
    assert r.rc == 0, r.err[-3000:]
    assert "UNFIT MODEL exported because of --accept-weak" in r.err
    m = load_manifest(tmp_path / "accepted")
    assert m.metrics["fit_for_use"] is False and m.metrics["fitness"]["reasons"]
    priv, _ = generate_keypair(tmp_path / "keys", "tech1")
    _, release = sign_model(tmp_path / "accepted" / "defect.onnx", release=2, key=load_private_key(priv),
                            key_id="tech1", devices=["dev1"])
    with pytest.raises(UpdateRefused) as e:
        DefectClassifierKind().check_manifest(release)
    assert e.value.reason == "unfit_model"


def test_defect_type_folder_trains_with_no_good_class(cli, tmp_path):
    generate_counts(tmp_path / "data", {"hole": 60, "scratch": 60}, seed=5, sizes=(48, 48))
    refused = _train(cli, tmp_path / "data", tmp_path / "x", "--epochs", "1")
    assert refused.rc == 3 and "--no-good-class" in refused.err
    r = _train(cli, tmp_path / "data", tmp_path / "out", "--no-good-class", "--image-size", "48", "--epochs", "8",
               "--accept-weak")
    assert r.rc == 0, r.err[-3000:]
    m = load_manifest(tmp_path / "out")
    assert m.labels == ["hole", "scratch"] and m.defect_labels == ["hole", "scratch"]
    ev = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert ev["balanced_accuracy"] >= 0.8  # chance is 0.5
    clf = DefectClassifier.load(tmp_path / "out" / "defect.onnx")
    frames = [read_image(p) for p in sorted((tmp_path / "data" / "scratch").glob("*.png"))[:10]]
    results = clf.classify_batch(frames)
    assert all(c.is_defect for c in results)  # every part is defective, of the predicted kind
    assert sum(c.label == "scratch" for c in results) >= 6


def test_good_class_by_any_name(cli, tmp_path):
    generate_counts(tmp_path / "data", {"ok": 30, "hole": 30}, seed=6, sizes=(32, 32))
    (tmp_path / "data" / "ok").rename(tmp_path / "data" / "pristine")
    r = _train(cli, tmp_path / "data", tmp_path / "out", "--good-class", "nope", "--epochs", "1")
    assert r.rc == 3 and "--good-class 'nope' is not one of the class folders" in r.err
    r = _train(cli, tmp_path / "data", tmp_path / "out", "--good-class", "pristine", "--no-good-class")
    assert r.rc == 2  # contradictory options
