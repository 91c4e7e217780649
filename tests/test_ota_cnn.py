"""OTA with the real exported CNN of the test session: serving ONNX, updated to the LiteRT artifact."""

from __future__ import annotations

import shutil

import cv2
import pytest

from tests.fixtures.models import make_release
from tests.fixtures.ota import OtaRig

pytestmark = pytest.mark.slow


def test_exported_cnn_update_from_onnx_to_litert(tmp_path, store, defect_model_dir, defect_data_dir):
    shipped = tmp_path / "shipped"
    shutil.copytree(defect_model_dir, shipped)
    rig = OtaRig(tmp_path / "rig", store, default=shipped / "defect.onnx", trial_frames=30)
    assert rig.serving_release == 1 and rig.loop.classifier.model_path.suffix == ".onnx"

    images = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for d in sorted(defect_data_dir.iterdir()) if d.is_dir()
              for p in sorted(d.iterdir())[:12]]
    for i in range(0, len(images), 4):
        rig.loop.feed(images[i:i + 4])

    r2 = make_release(defect_model_dir, tmp_path / "r2", release=2)
    rig.push(r2 / "defect.tflite", 2, summary="switch to LiteRT")
    assert rig.installer.trial is not None
    for i in range(0, len(images), 4):
        rig.loop.feed(images[i:i + 4])
        rig.updater.poll()
    assert rig.last_state()["status"] == "committed", rig.history()
    assert rig.serving_release == 2 and rig.loop.classifier.model_path.suffix == ".tflite"
    assert "tflite on cpu" in [h for h in rig.history() if h[0] == "trial"][0][2]  # its golden samples ran on LiteRT

    # the same weights signed again as another release: idempotent, nothing reinstalled
    env, _ = rig.sign(make_release(defect_model_dir, tmp_path / "r3", release=3) / "defect.tflite", 3)
    assert rig.updater.offer(env.to_json()) is None and rig.last_state()["status"] == "up_to_date"
