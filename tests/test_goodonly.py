"""Good-parts-only detection (issue 14 item 1): a folder with only ok/ trains, exports, loads on the
device side without any training framework, scores pasted defects above good parts, evaluates like
the classifier and installs over the air with its golden samples.

The detector is built once per module by `smartstock train cnn` in a subprocess (the CLI dispatch),
from generated surfaces; it needs the shipped backbone models/backbone/ (2.8 MB, in git).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT
from training.synth import generate

SIZE = 64


def pasted(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
    """A copy with a dark pit and a short bright scratch pasted at a random place; returns the centre."""
    out = img.copy()
    cx, cy = (int(v) for v in rng.integers(16, SIZE - 16, 2))
    cv2.circle(out, (cx, cy), 4, 20, -1, cv2.LINE_AA)
    cv2.line(out, (cx - 6, cy + 6), (cx + 6, cy - 5), 250, 2, cv2.LINE_AA)
    return out, (cx, cy)


@pytest.fixture(scope="module")
def goodonly(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("goodonly")
    data, out, test = base / "train", base / "model", base / "test"
    generate(data, 48, seed=11, size=SIZE, classes="binary", ok_fraction=1.0)   # good parts only
    assert [p.name for p in data.iterdir()] == ["ok"]
    rng = np.random.default_rng(5)
    (test / "ok").mkdir(parents=True)
    (test / "defect").mkdir()
    generate(base / "fresh", 16, seed=12, size=SIZE, classes="binary", ok_fraction=1.0)
    centres = {}
    for p in sorted((base / "fresh" / "ok").iterdir()):
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        shutil.copy(p, test / "ok" / p.name)
        bad, centres[p.name] = pasted(img, rng)
        cv2.imwrite(str(test / "defect" / p.name), bad)
    (base / "centres.json").write_text(json.dumps(centres))
    p = subprocess.run([sys.executable, "-m", "smartstock", "train", "cnn", "--data", str(data), "--out", str(out),
                        "--image-size", str(SIZE), "--false-alarm-rate", "0.05"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "good-parts-only detector from" in p.stdout
    return {"model": out / "goodonly.onnx", "dir": out, "test": test, "centres": base / "centres.json",
            "stdout": p.stdout}


DEVICE_CODE = r"""
import json, sys
from pathlib import Path
import cv2, numpy as np
from smartstock.vision.classifier import DefectClassifier
model, test = Path(sys.argv[1]), Path(sys.argv[2])
clf = DefectClassifier.load(model)
out = {"type": type(clf).__name__, "labels": clf.labels}
for kind in ("ok", "defect"):
    files = sorted((test / kind).iterdir())
    res = clf.classify_batch([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in files])
    out[kind] = {p.name: [r.scores["defect"], r.is_defect, np.unravel_index(int(r.heatmap.argmax()), r.heatmap.shape)[::-1],
                          list(r.heatmap.shape)] for p, r in zip(files, res)}
out["forbidden"] = sorted({n.split(".")[0] for n in sys.modules} & {"tensorflow", "keras", "torch", "training", "onnx"})
print(json.dumps(out, default=int))
"""


def test_good_only_export_runs_on_the_device_side_and_flags_pasted_defects(goodonly):
    manifest = json.loads((goodonly["dir"] / "manifest.json").read_text())
    assert manifest["kind"] == "defect-classifier" and manifest["labels"] == ["ok", "defect"]
    assert manifest["anomaly"]["calibration_images"] >= 8 and manifest["anomaly"]["threshold"] > 0
    assert (goodonly["dir"] / "LICENSE.efficientnet-lite0").is_file()

    p = subprocess.run(
        [sys.executable, "-c", DEVICE_CODE, str(goodonly["model"]), str(goodonly["test"])],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["type"] == "AnomalyDetector" and r["forbidden"] == []
    good = {k: v[0] for k, v in r["ok"].items()}
    bad = {k: v[0] for k, v in r["defect"].items()}
    # every part with a pasted defect scores above the same part without it, and most are flagged
    assert all(bad[k] > good[k] for k in good), (good, bad)
    assert sum(v[1] for v in r["defect"].values()) >= 0.75 * len(bad)
    assert sum(v[1] for v in r["ok"].values()) <= 0.25 * len(good)
    # the heat map's hottest patch lies on the pasted defect (stride 4 grid of a 64 px input)
    centres = json.loads(goodonly["centres"].read_text())
    cell = SIZE / r["defect"][next(iter(centres))][3][0]
    near = [max(abs((x + 0.5) * cell - centres[k][0]), abs((y + 0.5) * cell - centres[k][1])) <= 12
            for k, (_, _, (x, y), _) in r["defect"].items()]
    assert np.mean(near) >= 0.75, near


TFLITE_DEVICE_CODE = r"""
import json, sys
from pathlib import Path
import cv2, numpy as np
from smartstock.runtime import decode_array
from smartstock.vision.classifier import DefectClassifier
from smartstock.vision.manifest import run_golden
folder, test = Path(sys.argv[1]), Path(sys.argv[2])
files = {kind: sorted((test / kind).iterdir()) for kind in ("ok", "defect")}
frames = {kind: [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in fs] for kind, fs in files.items()}
out = {}
for fmt, name in (("onnx", "goodonly.onnx"), ("tflite", "goodonly.tflite"), ("tflite_int8", "goodonly_int8.tflite")):
    clf = DefectClassifier.load(folder / name)
    golden = decode_array(clf.manifest.golden_inputs).astype(np.float32)
    res = {kind: clf.classify_batch(fr) for kind, fr in frames.items()}
    out[fmt] = {"type": type(clf).__name__, "backend": clf.backend.type,
                "golden": list(run_golden(clf.backend, clf.manifest, fmt)),
                "golden_defect": [bool(v) for v in clf.scores_batch(list(golden))[:, 1] >= 0.5],
                **{kind: [[r.scores["defect"], r.is_defect] for r in rs] for kind, rs in res.items()},
                "heat": {kind: [r.heatmap.tolist() for r in rs] for kind, rs in res.items()}}
out["forbidden"] = sorted({n.split(".")[0] for n in sys.modules} & {"tensorflow", "keras", "torch", "training", "onnx"})
print(json.dumps(out, default=float))
"""


def test_good_only_tflite_exports_run_on_the_device_side_like_the_onnx_graph(goodonly):
    """goodonly.tflite (float) and goodonly_int8.tflite (int8 backbone, float distance tail) load with LiteRT
    alone, pass their golden samples, give the ONNX graph's verdict on them and score pasted defects above the
    same parts without them; the float one matches the ONNX scores and heat maps within 1e-3."""
    manifest = json.loads((goodonly["dir"] / "manifest.json").read_text())
    assert {k: a["file"] for k, a in manifest["artifacts"].items()} == {
        "onnx": "goodonly.onnx", "tflite": "goodonly.tflite", "tflite_int8": "goodonly_int8.tflite"}
    p = subprocess.run([sys.executable, "-c", TFLITE_DEVICE_CODE, str(goodonly["dir"]), str(goodonly["test"])],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["forbidden"] == []
    ref = r["onnx"]
    for fmt in ("tflite", "tflite_int8"):
        got = r[fmt]
        assert got["type"] == "AnomalyDetector" and got["backend"] == "tflite"
        assert got["golden"][0], got["golden"]
        assert got["golden_defect"] == ref["golden_defect"]
        good = np.array([v[0] for v in got["ok"]])
        bad = np.array([v[0] for v in got["defect"]])
        assert np.mean(bad > good) >= (1.0 if fmt == "tflite" else 0.8), (fmt, good, bad)
        assert sum(v[1] for v in got["defect"]) >= 0.75 * len(bad)
    int8 = np.array([v[0] for kind in ("ok", "defect") for v in r["tflite_int8"][kind]])
    assert np.mean(np.abs(int8 * 256 - np.round(int8 * 256)) > 1e-3) > 0.5   # float tail: not in 1/256 steps
    for kind in ("ok", "defect"):
        assert np.max(np.abs(np.array(r["tflite"][kind]) - np.array(ref[kind]))) <= 1e-3
        assert [v[1] for v in r["tflite"][kind]] == [v[1] for v in ref[kind]]
        assert np.max(np.abs(np.array(r["tflite"]["heat"][kind]) - np.array(ref["heat"][kind]))) <= 1e-3


def test_int8_detector_has_its_own_threshold(goodonly):
    """The int8 backbone moves the patch distances: the int8 export's ring statistics and threshold were fitted
    again on the same held-out good images, and the manifest, evaluation.json and the train output say so."""
    anomaly = json.loads((goodonly["dir"] / "manifest.json").read_text())["anomaly"]
    own = anomaly["int8"]
    assert own["calibration_images"] == anomaly["calibration_images"]
    assert own["threshold"] != anomaly["threshold"] and own["scale"] > 0
    assert json.loads((goodonly["dir"] / "evaluation.json").read_text())["int8"] == own
    assert f"int8 TFLite: its own threshold {own['threshold']:.4g}" in goodonly["stdout"]
    assert "goodonly.tflite, goodonly_int8.tflite" in goodonly["stdout"]


def test_eval_cnn_reports_roc_auc_for_a_good_only_model_with_any_defect_folder_name(goodonly, tmp_path):
    data = tmp_path / "eval"
    shutil.copytree(goodonly["test"] / "ok", data / "ok")
    shutil.copytree(goodonly["test"] / "defect", data / "scratch")   # a defect kind the model never saw by name
    p = subprocess.run([sys.executable, "-m", "smartstock", "eval", "cnn", "--model", str(goodonly["model"]),
                        "--data", str(data), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads(p.stdout)
    assert report["images"] == 32
    assert report["roc_auc"] >= 0.9
    assert report["defect_recall"] >= 0.75 and report["false_alarm_rate"] <= 0.25


def rewritten(src: Path, dst: Path, release: int, change) -> Path:
    """Another release of the exported detector whose ONNX graph went through `change` (manifest re-hashed,
    golden outputs kept as exported)."""
    import onnx

    from smartstock.runtime.hashing import file_sha256
    from smartstock.vision.manifest import load_manifest, write_manifest
    from tests.fixtures.models import make_release

    make_release(src, dst, release=release)
    path = dst / "goodonly.onnx"
    m = onnx.load(str(path))
    change(m)
    onnx.save(m, str(path))
    man = load_manifest(dst)
    art = man.artifacts["onnx"].model_copy(update={"sha256": file_sha256(path), "size": path.stat().st_size})
    write_manifest(man.model_copy(update={"artifacts": {"onnx": art}}), dst)
    return path


def test_good_only_model_installs_over_the_air_with_golden_samples(goodonly, tmp_path, store):
    from onnx import numpy_helper

    from smartstock.ota.refusal import UpdateRefused
    from smartstock.vision.anomaly import AnomalyDetector
    from tests.fixtures.models import make_release
    from tests.fixtures.ota import OtaRig

    shipped = make_release(goodonly["dir"], tmp_path / "shipped", release=1)
    rig = OtaRig(tmp_path / "rig", store, default=shipped / "goodonly.onnx", trial_frames=8)
    served = rig.loop.classifier
    assert isinstance(getattr(served, "model", served), AnomalyDetector)
    frames = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((goodonly["test"] / "ok").iterdir())]

    def relabel(m) -> None:  # same computation, other bytes: a new release to install
        m.doc_string = "release 2"

    rig.push(rewritten(goodonly["dir"], tmp_path / "r2", 2, relabel), 2, summary="good-only detector, release 2")
    for i in range(0, len(frames), 4):
        rig.loop.feed(frames[i:i + 4])
        rig.updater.poll()
    assert rig.last_state()["status"] == "committed", rig.history()
    assert rig.serving_release == 2
    assert "4 golden samples" in [h for h in rig.history() if h[0] == "trial"][0][2]

    def scale_bank(m) -> None:  # the memory bank swapped after export: golden samples must catch it
        bank = next(t for t in m.graph.initializer if t.name == "bank_aug")
        bank.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bank) * 1.5, "bank_aug"))

    with pytest.raises(UpdateRefused) as refused:
        rig.push(rewritten(goodonly["dir"], tmp_path / "r3", 3, scale_bank), 3)
    assert refused.value.reason == "golden_failed" and "max |diff|" in str(refused.value)
    assert rig.serving_release == 2


def test_good_only_tflite_detector_installs_over_the_air(goodonly, tmp_path, store):
    """A device serving the float TFLite detector takes the int8 one over the air (golden samples, trial); another
    refuses a release whose file is not the one its golden outputs came from (the int8 bytes under the float's
    name: a model that loads and runs, but scores otherwise)."""
    from smartstock.ota.refusal import UpdateRefused
    from smartstock.runtime.hashing import file_sha256
    from smartstock.store import open_store
    from smartstock.vision.anomaly import AnomalyDetector
    from smartstock.vision.manifest import load_manifest, write_manifest
    from tests.fixtures.models import make_release
    from tests.fixtures.ota import OtaRig

    shipped = make_release(goodonly["dir"], tmp_path / "shipped", release=1)
    rig = OtaRig(tmp_path / "rig", store, default=shipped / "goodonly.tflite", trial_frames=8)
    served = rig.loop.classifier
    assert isinstance(getattr(served, "model", served), AnomalyDetector) and served.backend.type == "tflite"
    frames = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((goodonly["test"] / "ok").iterdir())]

    r2 = make_release(goodonly["dir"], tmp_path / "r2", release=2)
    rig.push(r2 / "goodonly_int8.tflite", 2, summary="int8 good-only detector")
    for i in range(0, len(frames), 4):
        rig.loop.feed(frames[i:i + 4])
        rig.updater.poll()
    assert rig.last_state()["status"] == "committed", rig.history()
    assert rig.serving_release == 2 and rig.loop.classifier.model_path.name == "goodonly_int8.tflite"
    assert "4 golden samples" in [h for h in rig.history() if h[0] == "trial"][0][2]
    assert rig.loop.results[-1].heatmap is not None   # the heat map comes through LiteRT too

    other_store = open_store(tmp_path / "other-state")
    try:
        other = OtaRig(tmp_path / "other", other_store, default=shipped / "goodonly.tflite", trial_frames=8)
        bad = make_release(goodonly["dir"], tmp_path / "bad", release=2)
        path = bad / "goodonly.tflite"
        path.write_bytes((bad / "goodonly_int8.tflite").read_bytes())
        man = load_manifest(bad)
        art = man.artifacts["tflite"].model_copy(update={"sha256": file_sha256(path), "size": path.stat().st_size})
        write_manifest(man.model_copy(update={"artifacts": {**man.artifacts, "tflite": art}}), bad)
        with pytest.raises(UpdateRefused) as refused:
            other.push(path, 2)
        assert refused.value.reason == "golden_failed" and "max |diff|" in str(refused.value)
        assert other.serving_release == 1
    finally:
        other_store.close()


def test_defect_snapshot_gets_its_heat_map(goodonly, tmp_path):
    from edge.snapshots import SnapshotStore
    from smartstock.vision.classifier import DefectClassifier

    clf = DefectClassifier.load(goodonly["model"])
    img = cv2.imread(str(next(iter(sorted((goodonly["test"] / "defect").iterdir())))), cv2.IMREAD_UNCHANGED)
    r = clf.classify(img)
    snaps = SnapshotStore(tmp_path / "snaps", max_bytes=10_000_000)
    name = snaps.save(img, "ev1", heatmap=r.heatmap)
    heat = tmp_path / "snaps" / name.replace(".jpg", ".heat.jpg")
    assert heat.is_file() and snaps.path_of(heat.name) == heat
    assert cv2.imread(str(heat)).shape == (SIZE, SIZE, 3)
    assert snaps.bytes == sum(p.stat().st_size for p in (tmp_path / "snaps").glob("*.jpg"))


def test_good_only_options_out_of_range_are_refused_before_any_work(tmp_path):
    data = tmp_path / "line"
    generate(data, 12, seed=3, size=SIZE, classes="binary", ok_fraction=1.0)
    for flags, word in ((["--top-k", "100"], "--top-k 100"), (["--mirror-pad", "12"], "--mirror-pad 12")):
        p = subprocess.run([sys.executable, "-m", "smartstock", "train", "cnn", "--data", str(data), "--out",
                            str(tmp_path / "out"), "--image-size", str(SIZE), *flags],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert p.returncode == 3, (p.returncode, p.stderr[-2000:])   # InputError: bad input
        assert word in p.stderr and "Traceback" not in p.stderr
        assert not (tmp_path / "out" / "goodonly.onnx").exists()


def test_too_few_calibration_images_are_said_in_the_output_and_manifest(goodonly):
    """48 good images, 20% held out: the threshold rests on 10, too few for 5% false alarms (19 needed): the
    threshold sits above the highest held-out score, 1/11 of unseen good parts are expected flagged, and the
    train output, manifest and evaluation.json say so."""
    anomaly = json.loads((goodonly["dir"] / "manifest.json").read_text())["anomaly"]
    assert anomaly["calibration_images"] == 10
    assert anomaly["expected_false_alarm_rate"] == pytest.approx(1 / 11)
    assert anomaly["false_alarm_bound"] == pytest.approx(1 - 0.1 ** (1 / 10), abs=1e-6)
    ev = json.loads((goodonly["dir"] / "evaluation.json").read_text())
    assert ev["calibration_images"] == 10 and ev["calibration_enough"] is False
    assert ev["calibration_images_needed"] == 19
    out = goodonly["stdout"]
    assert "from 10 held-out good images" in out and "expect 9.09% of unseen good parts flagged" in out
    assert "warning: too few good images for a 5.00% false-alarm rate" in out and "at least 19" in out


def test_threshold_flags_at_most_the_target_share_of_unseen_good_parts_in_expectation():
    """Exchangeable good scores: the threshold from n of them flags a fresh one with probability at most the
    rate (the plain (1 - rate) quantile of 100 scores flags about 2%, not 1%). Uniform scores make the
    false-alarm rate 1 - threshold exactly."""
    from training.goodonly import calibrate

    rng = np.random.default_rng(0)
    for n in (100, 250, 1000):
        fa = [1 - min(calibrate(rng.uniform(size=n), 0.01).threshold, 1.0) for _ in range(2000)]
        assert np.mean(fa) <= 0.0105, (n, np.mean(fa))   # the plain quantile: 0.015 at n = 100
        if n > 100:  # and not needlessly strict once the rate can be resolved
            assert np.mean(fa) >= 0.005, (n, np.mean(fa))


def test_ring_statistics_do_not_make_the_threshold_optimistic():
    """Ring statistics and threshold from the same held-out images let each image tame its own score (on
    pcb_patches 1% asked, up to 2.7% flagged): calibrate_distances scores each image with the other folds'
    statistics, so fresh good parts, rescaled by the statistics of all, are flagged at about the rate asked."""
    import logging

    from training.goodonly import GoodOnlyRecipe, calibrate_distances, image_scores

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:  # heavy-tailed patch distances, 8 x 8 grid
        return rng.lognormal(0, 0.5, size=(n, 64)) * rng.lognormal(0, 0.3, size=(n, 1))

    recipe = GoodOnlyRecipe(false_alarm_rate=0.01)
    logging.disable(logging.WARNING)
    try:
        fa = []
        for rep in range(60):
            rng = np.random.default_rng(rep)
            (centre, spread), cal = calibrate_distances(draw(rng, 100), recipe)
            fresh = image_scores((draw(rng, 4000) - centre) / spread, recipe.border, recipe.top_k)
            fa.append(np.mean(fresh >= cal.threshold))
    finally:
        logging.disable(logging.NOTSET)
    assert np.mean(fa) <= 0.0115, np.mean(fa)   # own statistics: 0.012 here


def test_false_alarm_bound_is_the_clopper_pearson_bound():
    from training.goodonly import false_alarm_bound, images_needed

    assert false_alarm_bound(100, 0) == pytest.approx(1 - 0.1 ** (1 / 100), abs=1e-9)
    assert false_alarm_bound(400, 3) > false_alarm_bound(400, 2) > false_alarm_bound(1000, 2)
    assert false_alarm_bound(5000, 40) > 40 / 5000   # no overflow for large sets
    assert images_needed(0.01) == 99 and images_needed(0.05) == 19


@pytest.mark.parametrize("layers, stride, pad", [(("block2", "block4"), 8, 16), (("block4", "block10"), None, 0),
                                                 (("block2", "block4"), 4, 0)])
def test_tensorflow_patch_features_match_the_onnx_graph_for_other_recipes(layers, stride, pad):
    """The TFLite detector's feature part (training.goodonly_tflite) against the ONNX one for the branches the
    default recipe does not take: mirror padding, an upsampled coarser layer, a finer grid (ONNX pools with
    symmetric padding, TF's "same" would not)."""
    import onnxruntime as ort

    from training.goodonly_graph import feature_model
    from training.goodonly_tflite import _Graph

    x = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.float32)
    got = _Graph(layers, SIZE, stride, pad).patches(x).numpy()
    ref = ort.InferenceSession(feature_model(layers, SIZE, None, stride, pad=pad).SerializeToString()).run(
        None, {"image": x})[0]
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) <= 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_no_tflite_writes_the_onnx_detector_only(tmp_path):
    data = tmp_path / "line"
    generate(data, 12, seed=3, size=SIZE, classes="binary", ok_fraction=1.0)
    p = subprocess.run([sys.executable, "-m", "smartstock", "train", "cnn", "--data", str(data), "--out",
                        str(tmp_path / "out"), "--image-size", str(SIZE), "--false-alarm-rate", "0.2", "--no-tflite"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert list(manifest["artifacts"]) == ["onnx"] and manifest["anomaly"]["int8"] is None
    assert not list((tmp_path / "out").glob("*.tflite"))


@pytest.mark.parametrize("name", ["goodonly.onnx", "goodonly.tflite"])
def test_a_detector_whose_outputs_do_not_match_its_manifest_is_refused_at_load(goodonly, tmp_path, name):
    """A heat map output the model does not have is a ModelError when the model loads, not a KeyError in
    the inference worker on the first frame."""
    from smartstock.errors import ModelError
    from smartstock.vision.classifier import DefectClassifier

    folder = tmp_path / "model"
    shutil.copytree(goodonly["dir"], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["anomaly"]["heatmap_output"] = "heat"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="no output named heat"):
        DefectClassifier.load(folder / name)
    assert set(DefectClassifier.load(goodonly["dir"] / name).backend.output_names) >= {"scores", "heatmap"}
