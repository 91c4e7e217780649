"""One Exporter with a method per format (ONNX, TFLite float32, TFLite int8), each returning the path.

Every export is loaded back with the DEVICE backend (smartstock.runtime.backends), compared with the
Keras model on held-out images (label agreement, max score difference) and recorded in manifest.json
with its sha256, size and golden outputs. A float export that disagrees with Keras fails loudly.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from smartstock.errors import ModelError
from smartstock.runtime.backends import load_backend
from smartstock.vision.metrics import decisive_agreement
from smartstock.runtime import Artifact, Parity, encode_array, file_sha256
from smartstock.vision.manifest import Manifest, load_manifest, write_manifest
from smartstock.vision.preprocess import InputSpec

logger = logging.getLogger(__name__)

FILES = {"onnx": "defect.onnx", "tflite": "defect.tflite", "tflite_int8": "defect_int8.tflite"}
FLOAT_TOLERANCE = 1e-4  # Keras vs ONNX Runtime / LiteRT float32 on the same input
INT8_GOLDEN_STEPS = 4  # int8 goldens: this many output quantisation steps (ARM and x86 kernels may round differently)
INT8_MIN_AGREEMENT = 0.95  # on decisive images (below): under this the int8 export is refused (broken calibration)
INT8_DECISIVE_MARGIN = 0.2  # Keras top-2 score margin that makes an image decisive; near-ties may flip in 8 bits
GOLDEN_COUNT = 4
PARITY_BATCH = 64  # held-out images per backend run in the parity check


class Exporter:
    """Writes the artifacts of one trained Keras model plus its manifest into `out_dir`."""

    def __init__(self, model: Any, out_dir: Path, *, spec: InputSpec, labels: Sequence[str],
                 defect_labels: Sequence[str], thresholds: dict[str, float], heldout_x: np.ndarray,
                 heldout_y: np.ndarray | None = None, representative_x: np.ndarray | None = None,
                 model_id: str = "defect-cnn", release: int = 1, metrics: dict[str, Any] | None = None,
                 description: str = "") -> None:
        self.model = model
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.heldout_x = np.asarray(heldout_x, np.float32)
        self.heldout_y = heldout_y
        self.representative_x = np.asarray(representative_x if representative_x is not None else heldout_x, np.float32)
        self.reference = np.asarray(model.predict(self.heldout_x, verbose=0, batch_size=64), np.float32)
        golden = np.asarray(heldout_x[:GOLDEN_COUNT]).astype(np.uint8)
        self.golden = golden.astype(np.float32)
        spec = spec.model_copy(update={"name": "image", "dtype": "float32"})
        self.manifest = Manifest(model_id=model_id, release=release,
                                 created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), description=description,
                                 input=spec, labels=list(labels), defect_labels=list(defect_labels),
                                 thresholds=thresholds, metrics=metrics or {}, golden_inputs=encode_array(golden))

    def _signature(self):
        import tensorflow as tf

        return [tf.TensorSpec([None, *self.manifest.input.shape[1:]], tf.float32, name="image")]

    def export_onnx(self) -> Path:
        path = self.out_dir / FILES["onnx"]
        self.model.export(str(path), format="onnx", input_signature=self._signature(), verbose=False)
        return self._register("onnx", path, "float32")

    def export_tflite_float(self) -> Path:
        import tensorflow as tf

        with self._saved_model() as sm:
            conv = tf.lite.TFLiteConverter.from_saved_model(sm)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # Flex ops must fail, not sneak in
            data = conv.convert()
        path = self.out_dir / FILES["tflite"]
        path.write_bytes(data)
        return self._register("tflite", path, "float32")

    def export_tflite_int8(self) -> Path:
        """Full-integer model (int8 in and out) calibrated on the representative set."""
        import tensorflow as tf

        rep = self.representative_x

        def representative():
            for i in range(min(len(rep), 300)):
                yield [rep[i:i + 1]]

        with self._saved_model() as sm:
            conv = tf.lite.TFLiteConverter.from_saved_model(sm)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
            data = conv.convert()
        path = self.out_dir / FILES["tflite_int8"]
        path.write_bytes(data)
        return self._register("tflite_int8", path, "int8")

    def export_all(self) -> dict[str, Path]:
        return {"onnx": self.export_onnx(), "tflite": self.export_tflite_float(),
                "tflite_int8": self.export_tflite_int8()}

    def _saved_model(self):
        exporter = self

        class _Tmp:
            def __enter__(self) -> str:
                self.dir = tempfile.mkdtemp(prefix="smartstock-export-")
                exporter.model.export(self.dir + "/sm", format="tf_saved_model",
                                      input_signature=exporter._signature(), verbose=False)
                return self.dir + "/sm"

            def __exit__(self, *exc) -> None:
                shutil.rmtree(self.dir, ignore_errors=True)

        return _Tmp()

    def _register(self, fmt: str, path: Path, precision: str) -> Path:
        """Parity check with the device backend, then record the artifact in manifest.json."""
        backend = load_backend(path, "onnx" if fmt == "onnx" else "tflite", threads=2)
        # in batches: one run over a 748-image test split of a 160 px model with 8 test-time views
        # (transfer.with_test_time_views) needs more memory than the machine has (killed at 24 GB)
        got = np.concatenate([backend.run(self.heldout_x[i:i + PARITY_BATCH])
                              for i in range(0, len(self.heldout_x), PARITY_BATCH)])
        diff = float(np.max(np.abs(got - self.reference)))
        agree = float(np.mean(got.argmax(1) == self.reference.argmax(1)))
        acc = float(np.mean(got.argmax(1) == self.heldout_y)) if self.heldout_y is not None else None
        parity = Parity(images=len(got), label_agreement=agree, max_abs_diff=diff, accuracy=acc)
        logger.info("%s: %d held-out images, labels agree %.2f%%, max |score diff| %.3g", path.name, len(got),
                    agree * 100, diff)
        if precision == "float32" and (diff > FLOAT_TOLERANCE or agree < 1.0):
            raise ModelError(f"{path}: {fmt} export disagrees with Keras (max diff {diff:.3g}, agreement {agree:.2%})",
                             hint="a converter problem: check the TensorFlow/onnx versions")
        if precision == "int8":
            sure_agree, n_sure = decisive_agreement(got, self.reference, INT8_DECISIVE_MARGIN)
            logger.info("%s: labels agree %.2f%% on the %d images Keras is sure about", path.name, sure_agree * 100,
                        n_sure)
            if sure_agree < INT8_MIN_AGREEMENT:
                raise ModelError(f"{path}: int8 model agrees with Keras on only {sure_agree:.1%} of the {n_sure} "
                                 "held-out images Keras is sure about",
                                 hint="use more/more varied representative images, or ship the float model")
        golden_out = backend.run(self.golden)
        if precision == "int8":
            scale = float(getattr(backend, "_out_q", (1 / 256, 0))[0])
            tolerance = max(INT8_GOLDEN_STEPS * scale, 1e-3)
        else:
            tolerance = FLOAT_TOLERANCE
        self.manifest.artifacts[fmt] = Artifact(format=fmt, file=path.name, sha256=file_sha256(path),
                                                size=path.stat().st_size, precision=precision,
                                                golden_outputs=encode_array(golden_out.astype(np.float32)),
                                                golden_tolerance=tolerance, parity=parity)
        write_manifest(self.manifest, self.out_dir)
        return path


def make_release(src_dir: Path, dst_dir: Path, release: int = 2, *, model_id: str | None = None) -> Path:
    """Copy an exported model folder as another release (same weights, new release number and time).

    For OTA and edge tests: a second, valid release without training again. Returns dst_dir.
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    manifest = load_manifest(src_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    for art in manifest.artifacts.values():
        shutil.copy2(src_dir / art.file, dst_dir / art.file)
    update: dict[str, Any] = {"release": release, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if model_id:
        update["model_id"] = model_id
    write_manifest(manifest.model_copy(update=update), dst_dir)
    return dst_dir
