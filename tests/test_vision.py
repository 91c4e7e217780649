"""Device-side vision: preprocess, manifest checks, ONNX Runtime / LiteRT backends, classifier rules."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from smartstock.errors import BackendUnavailable, ConfigError, InputError, ModelError
from smartstock.vision import DefectClassifier, InputSpec, load_manifest, preprocess, run_golden, verify_artifact
from smartstock.runtime.backends import backend_for_path, load_backend
from smartstock.vision.classifier import decide, decide_batch
from smartstock.vision.images import read_image, scan_image_folder
from smartstock.runtime import MANIFEST_NAME
from smartstock.vision.manifest import write_manifest
from smartstock.vision.preprocess import preprocess_batch
from tests.conftest import python_subprocess

FORMATS = ("onnx", "tflite", "tflite_int8")
# int8 vs Keras on held-out images of the session's tiny model (8-bit softmax). One near-tie image moved by
# 0.168 once (labels all agreed), so the worst single image gets room; the mean holds the model to its float self.
INT8_MAX_DIFF = 0.25
INT8_MEAN_DIFF = 0.02
INT8_MIN_AGREEMENT = 0.95  # on the images Keras is sure about (top-2 margin >= 0.2); near-ties may flip in 8 bits


# --- preprocess (pure) -------------------------------------------------------------------------------------

def test_preprocess_gray_and_colour_inputs_give_the_manifest_shape():
    gray_spec = InputSpec(shape=[-1, 24, 32, 1], color="gray")
    bgr_spec = InputSpec(shape=[-1, 24, 32, 3], color="bgr")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (60, 80), np.uint8), rng.integers(0, 255, (60, 80, 3), np.uint8),
              rng.integers(0, 255, (60, 80, 4), np.uint8), rng.integers(0, 65535, (60, 80), np.uint16)]
    for f in frames:
        g = preprocess(f, gray_spec)
        c = preprocess(f, bgr_spec)
        assert g.shape == (24, 32, 1) and g.dtype == np.float32
        assert c.shape == (24, 32, 3) and c.dtype == np.float32
        assert 0 <= g.min() and g.max() <= 255


def test_preprocess_roi_crop_and_channel_order():
    frame = np.zeros((40, 40, 3), np.uint8)
    frame[10:20, 10:20] = (255, 0, 0)  # blue square in BGR
    spec = InputSpec(shape=[-1, 10, 10, 3], color="rgb", dtype="uint8")
    out = preprocess(frame, spec, roi=(10, 10, 10, 10))
    assert out.dtype == np.uint8
    assert (out[..., 2] == 255).all() and (out[..., 0] == 0).all()  # RGB: blue is the last channel
    nchw = preprocess(frame, spec.model_copy(update={"layout": "NCHW", "shape": [-1, 3, 10, 10]}), roi=(10, 10, 10, 10))
    assert nchw.shape == (3, 10, 10)


@pytest.mark.parametrize("bad", [np.zeros((0, 0), np.uint8), np.zeros((4, 4, 2), np.uint8), "not an image", None])
def test_preprocess_rejects_non_images(bad):
    with pytest.raises(InputError):
        preprocess(bad, InputSpec(shape=[-1, 8, 8, 1]))


@pytest.mark.parametrize("color,layout", [("gray", "NHWC"), ("bgr", "NHWC"), ("rgb", "NCHW")])
def test_batch_preprocess_equals_frame_by_frame(color, layout):
    """preprocess_batch converts small same-size frames in one call on the stacked batch: same bytes
    as preprocessing each frame alone, for every input kind, with and without resizing or a ROI."""
    ch = 1 if color == "gray" else 3
    spec = InputSpec(shape=[-1, 32, 32, ch] if layout == "NHWC" else [-1, ch, 32, 32], color=color, layout=layout)
    rng = np.random.default_rng(3)
    cases = [[rng.integers(0, 256, shape, np.uint8) for _ in range(5)]
             for shape in ((32, 32, 3), (48, 40, 3), (32, 32, 4), (32, 32), (32, 32, 1), (600, 800, 3))]
    cases.append([rng.integers(0, 256, (32, 32, 3), np.uint8), rng.integers(0, 256, (40, 40), np.uint8)])  # mixed
    for frames in cases:
        for roi in (None, (1, 2, 24, 20)):
            batch = preprocess_batch(frames, spec, roi)
            one_by_one = np.stack([preprocess(f, spec, roi) for f in frames])
            assert batch.dtype == one_by_one.dtype and np.array_equal(batch, one_by_one), (frames[0].shape, roi)


@pytest.mark.parametrize("color", ["gray", "rgb"])
def test_large_frames_give_the_plain_opencv_result_in_every_thread(color):
    """Large frames are converted into a reused per-thread buffer: every frame of a batch, and every
    thread at once, still gets exactly cvtColor + resize(INTER_AREA) of its own frame."""
    import cv2
    from concurrent.futures import ThreadPoolExecutor

    ch, code = (1, cv2.COLOR_BGR2GRAY) if color == "gray" else (3, cv2.COLOR_BGR2RGB)
    spec = InputSpec(shape=[-1, 96, 96, ch], color=color)
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (480, 640, 3), np.uint8) for _ in range(6)] + \
             [rng.integers(0, 256, (300, 500, 3), np.uint8) for _ in range(3)]

    def plain(f):
        return cv2.resize(cv2.cvtColor(f, code), (96, 96), interpolation=cv2.INTER_AREA).reshape(96, 96, ch)

    want = np.stack([plain(f) for f in frames]).astype(np.float32)
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda k: preprocess_batch(frames[k:] + frames[:k], spec), range(6)))
    for k, batch in enumerate(got):
        assert np.array_equal(batch, np.roll(want, -k, axis=0)), k


def test_batch_preprocess_converts_small_same_size_frames_in_one_call(monkeypatch):
    import cv2

    calls = []
    real = cv2.cvtColor
    monkeypatch.setattr(cv2, "cvtColor", lambda *a, **k: calls.append(1) or real(*a, **k))
    spec = InputSpec(shape=[-1, 32, 32, 1], color="gray")
    frames = [np.full((32, 32, 3), v, np.uint8) for v in range(0, 250, 50)]
    preprocess_batch(frames, spec)
    assert len(calls) == 1  # one conversion for the whole batch
    calls.clear()
    preprocess_batch([np.zeros((600, 800, 3), np.uint8)] * 3, spec)
    assert len(calls) == 3  # large frames: one by one (stacking them would cost more than it saves)


def test_preprocess_roi_outside_frame_is_an_input_error():
    with pytest.raises(InputError, match="ROI"):
        preprocess(np.zeros((20, 20), np.uint8), InputSpec(shape=[-1, 8, 8, 1]), roi=(15, 15, 10, 10))


# --- images and folders -------------------------------------------------------------------------------------

def test_corrupt_and_empty_images_are_input_errors_naming_the_file(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    for f in (empty, junk, tmp_path / "missing.png"):
        with pytest.raises(InputError) as e:
            read_image(f)
        assert f.name in str(e.value)


def test_one_class_folder_is_a_clear_error(tmp_path, defect_data_dir):
    one = tmp_path / "one"
    shutil.copytree(defect_data_dir / "ok", one / "ok")
    with pytest.raises(InputError, match=r"found 1 class folder.*need at least 2"):
        scan_image_folder(one)
    assert scan_image_folder(defect_data_dir).labels == ["hole", "ok", "scratch"]


# --- manifest and artifacts ---------------------------------------------------------------------------------

def test_manifest_describes_every_artifact(defect_model_dir):
    m = load_manifest(defect_model_dir)
    assert sorted(m.artifacts) == sorted(FORMATS)
    assert m.labels == ["hole", "ok", "scratch"] and m.defect_labels == ["hole", "scratch"]
    assert m.input.shape == [-1, 48, 48, 1] and m.input.color == "gray"
    for fmt in FORMATS:
        art = verify_artifact(defect_model_dir / m.artifacts[fmt].file, m)
        assert art.format == fmt
        assert art.parity is not None and art.parity.images > 0
    assert m.artifacts["onnx"].parity.max_abs_diff <= 1e-4 and m.artifacts["onnx"].parity.label_agreement == 1.0
    assert m.artifacts["tflite"].parity.max_abs_diff <= 1e-4
    assert m.to_bytes() == (defect_model_dir / MANIFEST_NAME).read_bytes()  # canonical bytes (signed by OTA)


@pytest.mark.parametrize("fmt", FORMATS)
def test_golden_samples_pass_on_each_format(defect_model_dir, fmt):
    m = load_manifest(defect_model_dir)
    backend = load_backend(defect_model_dir / m.artifacts[fmt].file)
    ok, diff, detail = run_golden(backend, m, fmt)
    assert ok, detail
    assert diff <= m.artifacts[fmt].golden_tolerance


def test_inference_side_matches_keras_without_tensorflow(defect_model_dir):
    """ONNX Runtime and LiteRT vs the Keras scores saved at training, in a process with no TensorFlow."""
    ref = defect_model_dir.parent / "keras_reference.npz"
    code = f"""
import json, sys
import numpy as np
from smartstock.vision import DefectClassifier
from smartstock.vision.manifest import load_manifest
from smartstock.vision.metrics import decisive_agreement
d = {str(defect_model_dir)!r}
ref = np.load({str(ref)!r})
out = {{}}
for fmt, art in load_manifest(d).artifacts.items():
    clf = DefectClassifier.load(d + "/" + art.file, threads=1)
    s = clf.backend.run(ref["x"].astype(np.float32))
    sure, n_sure = decisive_agreement(s, ref["keras"], 0.2)
    out[fmt] = {{"max_diff": float(np.abs(s - ref["keras"]).max()), "mean_diff": float(np.abs(s - ref["keras"]).mean()),
                "agree_sure": sure, "n_sure": n_sure,
                "agree": float(np.mean(s.argmax(1) == ref["keras"].argmax(1))), "n": int(len(s))}}
out["tf_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx"))
print(json.dumps(out))
"""
    p = python_subprocess(code)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r.pop("tf_loaded") == []
    for fmt in ("onnx", "tflite"):
        assert r[fmt]["n"] >= 30
        assert r[fmt]["agree"] == 1.0, r
        assert r[fmt]["max_diff"] <= 1e-4, r
    assert r["tflite_int8"]["n_sure"] >= 20, r
    assert r["tflite_int8"]["agree_sure"] >= INT8_MIN_AGREEMENT, r
    assert r["tflite_int8"]["max_diff"] <= INT8_MAX_DIFF, r
    assert r["tflite_int8"]["mean_diff"] <= INT8_MEAN_DIFF, r


@pytest.mark.parametrize("fmt", FORMATS)
def test_dynamic_batch_gives_the_same_scores_as_single_frames(defect_model_dir, fmt):
    m = load_manifest(defect_model_dir)
    backend = load_backend(defect_model_dir / m.artifacts[fmt].file, threads=1)
    x = np.random.default_rng(1).uniform(0, 255, (5, 48, 48, 1)).astype(np.float32)
    batch = backend.run(x)
    single = np.concatenate([backend.run(x[i:i + 1]) for i in range(5)])
    assert batch.shape == (5, 3)
    np.testing.assert_allclose(batch, single, atol=1e-5 if fmt != "tflite_int8" else 1e-2)
    np.testing.assert_allclose(batch.sum(1), 1.0, atol=0.02)
    with pytest.raises(InputError, match="does not match the model input"):
        backend.run(np.zeros((2, 32, 32, 1), np.float32))
    # every backend also gives its outputs by name (the good-only detector reads its heat map this way)
    (name,) = backend.output_names  # the classifier has one output, whatever its exporter named it
    np.testing.assert_array_equal(backend.run_outputs(x)[name], batch)
    with pytest.raises(InputError, match="does not match the model input"):
        backend.run_outputs(np.zeros((2, 32, 32, 1), np.float32))


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_backend_serves_several_threads_at_once(defect_model_dir, fmt):
    """The loop's inference workers share one loaded model: results under concurrency equal serial ones."""
    m = load_manifest(defect_model_dir)
    backend = load_backend(defect_model_dir / m.artifacts[fmt].file, threads=1)
    rng = np.random.default_rng(2)
    batches = [rng.uniform(0, 255, (int(rng.integers(1, 6)), 48, 48, 1)).astype(np.float32) for _ in range(24)]
    serial = [backend.run(b) for b in batches]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for _ in range(5):
                for i in range(offset, len(batches), 3):
                    out = backend.run(batches[i])
                    if i in results:
                        assert np.array_equal(results[i], out)
                    results[i] = out
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for i, want in enumerate(serial):
        np.testing.assert_array_equal(results[i], want)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_model_file_is_refused(defect_model_dir, tmp_path, fmt):
    d = _copy(defect_model_dir, tmp_path / "m")
    f = d / load_manifest(d).artifacts[fmt].file
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ModelError, match="truncated") as e:
        DefectClassifier.load(f)
    assert f.name in str(e.value)


def test_model_file_from_another_export_is_refused(defect_model_dir, tmp_path):
    d = _copy(defect_model_dir, tmp_path / "m")
    onnx = d / "defect.onnx"
    data = bytearray(onnx.read_bytes())
    data[-10] ^= 0xFF  # same size, different bytes
    onnx.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        DefectClassifier.load(onnx)


def test_manifest_that_does_not_match_the_model_is_refused(defect_model_dir, tmp_path):
    d = _copy(defect_model_dir, tmp_path / "m")
    m = load_manifest(d)
    write_manifest(m.model_copy(update={"labels": ["hole", "ok"], "defect_labels": ["hole"],
                                        "thresholds": {"hole": 0.5}}), d)
    with pytest.raises(ModelError, match=r"3 outputs but the manifest lists 2 labels"):
        DefectClassifier.load(d / "defect.onnx")
    write_manifest(m.model_copy(update={"input": m.input.model_copy(update={"shape": [-1, 64, 64, 1]})}), d)
    with pytest.raises(ModelError, match="does not match manifest input.shape"):
        DefectClassifier.load(d / "defect.tflite")


def test_missing_or_broken_manifest_is_refused(defect_model_dir, tmp_path):
    d = _copy(defect_model_dir, tmp_path / "m")
    (d / MANIFEST_NAME).write_text('{"model_id": "x", ')
    with pytest.raises(ModelError, match="not valid JSON"):
        DefectClassifier.load(d / "defect.onnx")
    raw = json.loads((defect_model_dir / MANIFEST_NAME).read_text())
    raw["surprise"] = 1
    (d / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="surprise") as unknown:
        DefectClassifier.load(d / "defect.onnx")
    assert "update the device software" in unknown.value.hint and "typo" in unknown.value.hint
    raw = json.loads((defect_model_dir / MANIFEST_NAME).read_text())
    raw["release"] = "first"
    (d / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="release") as bad:
        DefectClassifier.load(d / "defect.onnx")
    assert "re-export" in bad.value.hint
    (d / MANIFEST_NAME).unlink()
    with pytest.raises(ModelError, match="manifest.json not found"):
        DefectClassifier.load(d / "defect.onnx")


def test_backend_choice_by_suffix_and_config(defect_model_dir, tmp_path):
    assert backend_for_path(Path("a.onnx")) == "onnx"
    assert backend_for_path(Path("a.tflite"), "tflite") == "tflite"
    with pytest.raises(ConfigError, match="cannot run"):
        backend_for_path(Path("a.onnx"), "tflite")
    with pytest.raises(ModelError, match="unknown model file type"):
        backend_for_path(Path("a.pt"))


@pytest.mark.parametrize("blocked,model", [(("onnxruntime",), "defect.onnx"),
                                           (("ai_edge_litert", "tflite_runtime"), "defect.tflite")])
def test_missing_runtime_names_the_extra(defect_model_dir, blocked, model):
    code = f"""
import sys
for name in {blocked!r}:
    sys.modules[name] = None
from smartstock.errors import BackendUnavailable
from smartstock.vision import DefectClassifier
try:
    DefectClassifier.load({str(defect_model_dir / model)!r})
except BackendUnavailable as e:
    print("OK", e)
"""
    p = python_subprocess(code)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("OK") and "smartstock[edge]" in p.stdout
    assert issubclass(BackendUnavailable, Exception)


# --- classifier ---------------------------------------------------------------------------------------------

def test_decision_rule_thresholds():
    labels, defects = ["crack", "ok", "scratch"], ["crack", "scratch"]
    s = np.array([0.3, 0.4, 0.3])
    assert decide(s, labels, defects, {}) == (1, False)  # no defect reaches 0.5: good part
    assert decide(s, labels, defects, {"crack": 0.25}) == (0, True)  # crack passes its threshold
    assert decide(s, labels, defects, {"crack": 0.25, "scratch": 0.2}) == (0, True)  # ties: highest score wins
    assert decide(np.array([0.1, 0.2, 0.7]), labels, defects, {"scratch": 0.9}) == (1, False)


def test_batch_decisions_match_the_rule_label_by_label():
    """decide_batch (vectorised, used on every batch) against a plain scan of the documented rule."""
    rng = np.random.default_rng(4)

    def scan(s, labels, defects, thr):
        passing = [i for i, name in enumerate(labels) if name in defects and s[i] >= thr.get(name, 0.5)]
        if passing:
            return max(passing, key=lambda i: (s[i], -i)), True
        good = [i for i, name in enumerate(labels) if name not in defects]
        if not good:
            return int(np.argmax(s)), True
        return max(good, key=lambda i: (s[i], -i)), False

    for labels, defects in ((["ok", "defect"], ["defect"]), (["crack", "ok", "scratch", "short"], ["crack", "scratch", "short"]),
                            (["a", "b"], ["a", "b"])):
        thr = {d: float(rng.uniform(0.1, 0.9)) for d in defects[:-1]}
        scores = rng.dirichlet(np.ones(len(labels)), 200).astype(np.float32)
        scores[:20] = np.round(scores[:20], 1)  # ties
        idx, flags = decide_batch(scores, labels, defects, thr)
        assert [(int(i), bool(f)) for i, f in zip(idx, flags)] == [scan(s, labels, defects, thr) for s in scores]


def test_changing_thresholds_changes_the_next_decisions(defect_model_dir, defect_data_dir):
    clf = DefectClassifier.load(defect_model_dir / "defect.onnx", threads=1)
    # the 4 ok images the session-trained model is surest about (training on a busy 2-core box is not bit-stable)
    frames = [read_image(p) for p in sorted((defect_data_dir / "ok").iterdir())[:12]]
    frames = [f for _, f in sorted(zip([max(r.scores[d] for d in clf.manifest.defect_labels)
                                        for r in clf.classify_batch(frames)], frames), key=lambda t: t[0])][:4]
    assert not any(r.is_defect for r in clf.classify_batch(frames))
    clf.thresholds = {**clf.thresholds, **{d: 0.0 for d in clf.manifest.defect_labels}}  # as the set-threshold command
    assert all(r.is_defect for r in clf.classify_batch(frames))


def test_classifier_on_real_images(defect_model_dir, defect_data_dir):
    clf = DefectClassifier.load(defect_model_dir / "defect.onnx", threads=1)
    assert clf.release == 1 and clf.model_id == "test-defect" and clf.labels == ["hole", "ok", "scratch"]
    frames = [read_image(p) for p in sorted((defect_data_dir / "hole").iterdir())[:4]]
    frames += [read_image(p) for p in sorted((defect_data_dir / "ok").iterdir())[:4]]
    results = clf.classify_batch(frames)
    assert len(results) == 8
    for r in results:
        assert r.label in clf.labels and r.latency_ms > 0
        assert abs(sum(r.scores.values()) - 1.0) < 1e-3
        assert r.score == r.scores[r.label]
        assert r.is_defect == (r.label in ("hole", "scratch"))
    one = clf.classify(frames[0])
    assert one.scores == pytest.approx(results[0].scores, abs=1e-5)
    # a threshold of 0 for "hole" makes every part a defect; thresholds of 1 make (almost) none
    eager = DefectClassifier.load(defect_model_dir / "defect.tflite", thresholds={"hole": 0.0})
    assert all(r.is_defect for r in eager.classify_batch(frames))
    with pytest.raises(ModelError, match="labels the model does not have"):
        DefectClassifier.load(defect_model_dir / "defect.onnx", thresholds={"dent": 0.3})
    with pytest.raises(InputError):
        clf.classify(np.zeros((0,), np.uint8))


def test_roi_is_applied_before_resizing(defect_model_dir, defect_data_dir):
    frame = read_image(sorted((defect_data_dir / "hole").iterdir())[0])
    big = np.full((200, 300), 128, np.uint8)
    big[50:98, 100:148] = frame
    plain = DefectClassifier.load(defect_model_dir / "defect.onnx").classify(frame)
    cropped = DefectClassifier.load(defect_model_dir / "defect.onnx", roi=(100, 50, 48, 48)).classify(big)
    assert cropped.scores == pytest.approx(plain.scores, abs=1e-5)


def test_shipped_default_model_loads_and_passes_its_goldens():
    from smartstock.vision import default_model_path

    path = default_model_path()
    m = load_manifest(path)
    assert "demo" in m.description.lower()
    for fmt, art in m.artifacts.items():
        clf = DefectClassifier.load(path.parent / art.file, threads=1)
        ok, _, detail = run_golden(clf.backend, m, fmt)
        assert ok, detail


def test_decisive_agreement_ignores_near_ties_only():
    from smartstock.vision.metrics import decisive_agreement

    ref = np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8], [0.5, 0.5]])
    got = np.array([[0.8, 0.2], [0.45, 0.55], [0.7, 0.3], [0.4, 0.6]])
    # Rows 1 and 3 are near-ties (ignored); row 0 agrees, row 2 is a confident flip.
    assert decisive_agreement(got, ref, 0.2) == (0.5, 2)
    assert decisive_agreement(ref, ref, 0.2) == (1.0, 2)


def test_shipped_models_are_found_through_smartstock_models_dir(tmp_path, monkeypatch):
    """A wheel or container install is not beside the repository's models/: SMARTSTOCK_MODELS_DIR says where."""
    from edge.ota_agent import shipped_demand_model
    from smartstock.shipped import ENV

    root = Path(__file__).resolve().parents[1] / "models"
    shutil.copytree(root / "defect", tmp_path / "defect")
    shutil.copytree(root / "demand", tmp_path / "demand")
    monkeypatch.setenv(ENV, str(tmp_path))
    assert DefectClassifier.load(threads=1).model_path == tmp_path / "defect" / "defect.onnx"
    assert shipped_demand_model() == tmp_path / "demand" / "demand_lstm.onnx"
    monkeypatch.setenv(ENV, str(tmp_path / "nowhere"))  # falls back to the checkout's models/
    assert DefectClassifier.load(threads=1).model_path == root / "defect" / "defect.onnx"


def test_letterbox_keeps_the_aspect_and_pads_with_the_frame_mean():
    frame = np.zeros((100, 300), np.uint8)
    frame[:, 150:] = 200  # mean 100
    frame[50, :] = 255    # a one-pixel scratch across the part
    spec = InputSpec(shape=[-1, 48, 48, 1], fit="letterbox")
    x = preprocess(frame, spec)[..., 0]
    assert x.shape == (48, 48)
    assert (x[:15] == round(frame.mean())).all() and (x[-15:] == round(frame.mean())).all()  # 300x100 -> 48x16
    inner = x[16:32]
    assert inner[:, :20].mean() < 40 and inner[:, 28:].mean() > 160  # left dark, right bright, not squeezed
    stretched = preprocess(frame, InputSpec(shape=[-1, 48, 48, 1]))[..., 0]  # the default stays "stretch"
    assert stretched[0, :20].max() < 40 and x[0, :20].min() == round(frame.mean())  # no padding when stretched
    same = np.full((48, 48), 7, np.uint8)
    assert (preprocess(same, spec) == 7).all()  # already the model's size: untouched
    batch = preprocess_batch([frame, frame.T.copy(), same], spec)
    assert batch.shape == (3, 48, 48, 1) and (batch[0] == preprocess(frame, spec)).all()
    assert (batch[1][:, :15] == round(frame.mean())).all()  # a tall frame is padded left and right


def test_prepared_frames_score_as_plain_frames_and_are_redone_for_another_input(monkeypatch):
    """classify_batch takes frames preprocessed ahead (prepare(), in a capture thread): the same scores
    bit for bit, without preprocessing them again; one made for another ROI (a model swapped in
    meanwhile) is preprocessed again."""
    import smartstock.vision.classifier as classifier_mod
    from smartstock.vision.classifier import default_model_path

    path = default_model_path()
    a = DefectClassifier.load(path, threads=1, providers=("cpu",))
    b = DefectClassifier.load(path, threads=1, providers=("cpu",), roi=(10, 10, 200, 150))
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (240, 320, 3), np.uint8) for _ in range(5)]
    want_a, want_b = a.scores_batch(frames), b.scores_batch(frames)
    calls = []
    real = classifier_mod.preprocess_batch
    monkeypatch.setattr(classifier_mod, "preprocess_batch", lambda *args: calls.append(1) or real(*args))
    prepared = [a.prepare(f) for f in frames]
    assert np.array_equal(a.scores_batch(prepared), want_a) and calls == []  # the samples, not redone
    assert np.array_equal(b.scores_batch(prepared), want_b) and calls == [1]  # made for a's input: redone
    mixed = [a.prepare(f) if i % 2 else f for i, f in enumerate(frames)]
    assert np.array_equal(a.scores_batch(mixed), want_a)
    assert [r.label for r in a.classify_batch([a.prepare(f) for f in frames])] == [r.label for r in a.classify_batch(frames)]


def test_a_model_with_a_fixed_batch_above_one_is_refused_at_load(tmp_path):
    """The backends run one frame at a time when the batch axis is fixed; a model fixed at 2 frames would
    loop splitting batches it can never take. It is refused when it loads, naming the fix."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["scores"])], "fixed",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2, 4])])
    path = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    with pytest.raises(ModelError, match="batches of exactly 2 frames"):
        load_backend(path, "onnx", threads=1)
