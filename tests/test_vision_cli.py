"""`smartstock eval cnn` as a user runs it: text and JSON, onnx and tflite, bad inputs with exit codes."""

from __future__ import annotations

import json
import shutil

import pytest


@pytest.mark.parametrize("fmt_file", ["defect.onnx", "defect_int8.tflite"])
def test_eval_cnn_text(cli, defect_model_dir, defect_data_dir, fmt_file):
    r = cli("eval", "cnn", "--model", defect_model_dir / fmt_file, "--data", defect_data_dir)
    assert r.rc == 0, r.err
    assert "accuracy:" in r.out and "confusion (rows = true" in r.out
    for label in ("hole", "ok", "scratch"):
        assert label in r.out
    assert "Traceback" not in r.err


def test_eval_cnn_json_counts_every_image(cli, defect_model_dir, defect_data_dir):
    r = cli("eval", "cnn", "--model", defect_model_dir / "defect.tflite", "--data", defect_data_dir, "--json",
            "--backend", "tflite")
    assert r.rc == 0, r.err
    rep = json.loads(r.out)
    n_files = sum(1 for p in defect_data_dir.rglob("*.png"))
    assert rep["images"] == n_files
    assert rep["backend"] == "tflite" and rep["labels"] == ["hole", "ok", "scratch"]
    cm = rep["confusion"]
    assert sum(map(sum, cm)) == n_files
    assert rep["accuracy"] == pytest.approx(sum(cm[i][i] for i in range(3)) / n_files)
    assert set(rep["per_class"]) == {"hole", "ok", "scratch"}
    assert 0.0 <= rep["defect_recall"] <= 1.0 and "roc_auc" in rep


def test_eval_cnn_skips_corrupt_images_and_says_so(cli, defect_model_dir, defect_data_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(defect_data_dir, data)
    (data / "ok" / "broken.png").write_bytes(b"garbage")
    (data / "hole" / "empty.jpg").write_bytes(b"")
    r = cli("eval", "cnn", "--model", defect_model_dir / "defect.onnx", "--data", data, "--json")
    assert r.rc == 3
    assert "broken.png" in r.err and "empty.jpg" in r.err and "Traceback" not in r.err
    rep = json.loads(r.out)
    assert rep["images"] == sum(1 for p in defect_data_dir.rglob("*.png"))


def test_eval_cnn_bad_model_and_bad_folder(cli, defect_model_dir, defect_data_dir, tmp_path):
    m = tmp_path / "m"
    shutil.copytree(defect_model_dir, m)
    (m / "defect.onnx").write_bytes((m / "defect.onnx").read_bytes()[:1000])
    r = cli("eval", "cnn", "--model", m / "defect.onnx", "--data", defect_data_dir)
    assert r.rc == 4 and "truncated" in r.err and "Traceback" not in r.err

    other = tmp_path / "other"
    (other / "dent").mkdir(parents=True)
    shutil.copy(next((defect_data_dir / "ok").iterdir()), other / "dent" / "a.png")
    r = cli("eval", "cnn", "--model", defect_model_dir / "defect.onnx", "--data", other)
    assert r.rc == 3 and "dent" in r.err and "not labels of the model" in r.err

    r = cli("eval", "cnn", "--model", defect_model_dir / "defect.onnx", "--data", tmp_path / "nope")
    assert r.rc == 3 and "not a folder" in r.err
