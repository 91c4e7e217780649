"""Good-only detector (issue 14): k-nearest-neighbour patch distances (numpy and the exported graph agree)
and the held-out split by source picture, so the threshold is calibrated on images new to the bank.
Needs the shipped backbone models/backbone/ (in git); no shared data."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.util import find_spec

import numpy as np
import pytest

from tests.conftest import ROOT
from training.synth import generate


def test_nn_distances_average_the_k_nearest_bank_rows_across_search_chunks():
    from training.goodonly import NN_CHUNK, nn_distances

    rng = np.random.default_rng(0)
    patches = rng.normal(size=(2, 30, 8)).astype(np.float32)
    bank = rng.normal(size=(NN_CHUNK + 900, 8)).astype(np.float32)   # the nearest rows fall in both chunks
    d = np.sqrt(((patches.reshape(-1, 1, 8) - bank[None]) ** 2).sum(-1))
    for k in (1, 3, 5):
        want = np.sort(d, 1)[:, :k].mean(1).reshape(2, 30)
        assert np.abs(nn_distances(patches, bank, k) - want).max() < 1e-4, k


def test_detector_graph_scores_with_k_neighbours_as_numpy_does():
    import onnxruntime as ort

    from training.goodonly import PatchFeatures, GoodOnlyRecipe, image_scores, nn_distances
    from training.goodonly_graph import detector_model
    from smartstock.vision.preprocess import preprocess_batch

    recipe = GoodOnlyRecipe(image_size=64, neighbours=3, threads=1)
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(6)]
    feats = PatchFeatures(recipe)
    p = feats(frames)
    bank = p[:3].reshape(-1, p.shape[-1])[::2].copy()
    side = int(np.sqrt(p.shape[1]))
    position = (np.full(p.shape[1], 0.5, np.float32), np.full(p.shape[1], 2.0, np.float32))
    threshold, scale = 1.0, 0.5
    model = detector_model(recipe.layers, 64, bank, threshold, scale, patch_stride=recipe.patch_stride, top_k=3,
                           position=position, neighbours=3)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    scores, heat = sess.run(None, {"image": preprocess_batch(frames, recipe.spec()).astype(np.float32)})
    d = (nn_distances(p, bank, 3) - position[0]) / position[1]
    want = 1 / (1 + np.exp(-(image_scores(d, 0, 3) - threshold) / scale))
    assert np.abs(scores[:, 1] - want).max() < 1e-3
    assert np.abs(heat - 1 / (1 + np.exp(-(d.reshape(-1, side, side) - threshold) / scale))).max() < 1e-3
    single = (nn_distances(p, bank, 1) - position[0]) / position[1]
    assert np.abs(d - single).max() > 1e-2   # k = 3 is not the nearest row alone


def test_held_out_images_come_from_other_source_pictures_than_the_bank():
    from training.goodonly_split import hold_out, source_of

    names = [f"{i:08d}_{j}.png" for i in range(300) for j in range(3)]   # 3 crops per picture
    split = hold_out(names, 0.2, seed=0)
    assert split.by == "source" and split.sources == 300 and not split.warnings
    assert {source_of(names[i]) for i in split.calib}.isdisjoint({source_of(names[i]) for i in split.train})
    assert 180 <= len(split.calib) < 183 and sorted(split.calib + split.train) == list(range(900))
    # names without shared sources: one image each, the same images as the split before sources
    plain = [f"IMG_{i:04d}.png" for i in range(50)]
    split = hold_out(plain, 0.2, seed=4)
    order = np.random.default_rng(4).permutation(50)
    assert split.by == "image" and split.calib == list(order[:10]) and split.train == list(order[10:])
    # a folder cut from three pictures: held out per image, and said
    few = [f"board{i % 3}_tile{i}.png" for i in range(60)]
    split = hold_out(few, 0.2, seed=0)
    assert split.by == "image" and len(split.warnings) == 1 and "only 3 source pictures" in split.warnings[0]
    # a prefix shared by many images names a camera or a day, not a picture: held out per image
    for prefixed in ([f"cam{c:02d}_{i:04d}.png" for c in range(10) for i in range(50)],
                     [f"202612{d:02d}-{i:04d}.png" for d in range(1, 13) for i in range(40)]):
        split = hold_out(prefixed, 0.2, seed=0)
        assert split.by == "image", prefixed[0]
        assert len({source_of(prefixed[i]) for i in split.calib}) > 5


def test_cross_fitting_keeps_a_source_picture_in_one_fold():
    """Crops of one picture are near twins: a held-out crop must not be scored by ring statistics its twins
    fed. With groups a picture's crops share a fold, so changing the twins leaves the crop's score alone."""
    from training.goodonly import cross_fitted_scores

    rng = np.random.default_rng(0)
    d = rng.gamma(2.0, 1.0, (60, 16))
    groups = [f"p{i // 3}" for i in range(60)]       # 20 pictures of 3 crops
    changed = d.copy()
    changed[1:3] *= 50.0                              # the twins of crop 0 (picture p0) become extreme
    grouped = [cross_fitted_scores(x, 0, 3, seed=1, groups=groups)[0] for x in (d, changed)]
    assert grouped[0] == grouped[1]
    plain = [cross_fitted_scores(x, 0, 3, seed=s)[0] for x in (d, changed) for s in range(4)]
    assert any(a != b for a, b in zip(plain[:4], plain[4:]))  # by image, twins land in other folds


def test_train_cnn_holds_out_by_source_and_scores_with_3_neighbours_by_default(tmp_path):
    data = tmp_path / "line" / "ok"
    generate(tmp_path / "gen", 60, seed=13, size=64, classes="binary", ok_fraction=1.0)
    data.mkdir(parents=True)
    for i, p in enumerate(sorted((tmp_path / "gen" / "ok").iterdir())):
        p.rename(data / f"part{i // 3:03d}_{i % 3}.png")   # 20 source pictures, 3 crops each
    out = tmp_path / "model"
    p = subprocess.run([sys.executable, "-m", "smartstock", "train", "cnn", "--data", str(data.parent), "--out",
                        str(out), "--image-size", "64", "--false-alarm-rate", "0.1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "held-out good images (whole source pictures by file name, of 20)" in p.stdout
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["held_out_by"] == "source" and ev["calibration_images"] == 12 and ev["train_images"] == 48
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["anomaly"]["neighbours"] == 3   # the default: mean distance to the 3 nearest bank patches
    if find_spec("tensorflow") is not None:   # the TFLite graphs use the 3 nearest too (export checks them vs ONNX)
        assert {"onnx", "tflite", "tflite_int8"} <= set(manifest["artifacts"])
        assert manifest["artifacts"]["tflite"]["parity"]["max_abs_diff"] < 1e-3


@pytest.mark.parametrize("flag", ["0", "65"])
def test_neighbours_out_of_range_is_refused_before_any_work(tmp_path, flag):
    data = tmp_path / "line"
    generate(data, 12, seed=3, size=64, classes="binary", ok_fraction=1.0)
    p = subprocess.run([sys.executable, "-m", "smartstock", "train", "cnn", "--data", str(data), "--out",
                        str(tmp_path / "out"), "--image-size", "64", "--neighbours", flag],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 3 and f"--neighbours {flag}" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "out" / "goodonly.onnx").exists()
