"""Export the demand LSTM: one method per format, each returning the written path, then the manifest.

Parity: every artifact is run on golden windows with its own runtime and compared with Keras; an
artifact that disagrees is not written into the manifest (the export fails loudly).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from smartstock.errors import ModelError
from smartstock.forecasting.lstm_manifest import DemandManifest, write_demand_manifest
from smartstock.runtime import Artifact, encode_array, file_sha256

logger = logging.getLogger(__name__)

FILES = {"onnx": "demand_lstm.onnx", "tflite": "demand_lstm.tflite"}
TOLERANCE = 1e-3  # scaled units (the series' own mean level = 1)


class DemandExporter:
    def __init__(self, model: Any, out_dir: Path, *, recipe: Any, features: list[str], golden: np.ndarray,
                 freq: str | None, metrics: dict[str, float], model_id: str = "demand-lstm", release: int = 1) -> None:
        self.model = model
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.golden = golden.astype(np.float32)
        self.keras_out = np.asarray(model.predict(self.golden, verbose=0), np.float64)
        self.manifest = DemandManifest(
            model_id=model_id, release=release, created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            description="global demand LSTM over per-window mean-scaled history", window=recipe.window,
            horizon=recipe.horizon, season_length=max(1, recipe.season_length), freq=freq, features=features,
            metrics=metrics, golden_inputs=encode_array(self.golden))

    def _signature(self):
        import tensorflow as tf

        return [tf.TensorSpec([None, self.manifest.window, len(self.manifest.features)], tf.float32, name="history")]

    def export_onnx(self) -> Path:
        path = self.out_dir / FILES["onnx"]
        self.model.export(str(path), format="onnx", input_signature=self._signature(), verbose=False)
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return self._register("onnx", path, lambda x: sess.run(None, {name: x})[0])

    def export_tflite(self) -> Path:
        import tensorflow as tf

        tmp = tempfile.mkdtemp(prefix="lstm_sm_")
        try:
            self.model.export(tmp, format="tf_saved_model", verbose=False)
            conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # Flex ops must fail, not sneak in
            data = conv.convert()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        path = self.out_dir / FILES["tflite"]
        path.write_bytes(data)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # pragma: no cover
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]

        def run(x: np.ndarray) -> np.ndarray:
            it = Interpreter(model_path=str(path))
            inp = it.get_input_details()[0]
            it.resize_tensor_input(inp["index"], list(x.shape))
            it.allocate_tensors()
            it.set_tensor(inp["index"], x)
            it.invoke()
            return it.get_tensor(it.get_output_details()[0]["index"])

        return self._register("tflite", path, run)

    def _register(self, fmt: str, path: Path, run) -> Path:
        out = np.asarray(run(self.golden), np.float64)
        diff = float(np.max(np.abs(out - self.keras_out)))
        if not diff <= TOLERANCE:
            raise ModelError(f"{path.name}: differs from Keras by {diff:.3g} on the golden windows (tolerance {TOLERANCE})",
                             hint="the conversion changed the model; check the converter log")
        logger.info("%s: parity with Keras on %d golden windows, max |diff| %.2e", path.name, len(self.golden), diff)
        self.manifest.artifacts[fmt] = Artifact(format=fmt, file=path.name, sha256=file_sha256(path),
                                                size=path.stat().st_size, golden_outputs=encode_array(out.astype(np.float32)),
                                                golden_tolerance=TOLERANCE)
        self.manifest.metrics[f"parity_max_abs_diff_{fmt}"] = diff
        return path

    def export_all(self) -> dict[str, Path]:
        paths = {"onnx": self.export_onnx(), "tflite": self.export_tflite()}
        paths["manifest"] = write_demand_manifest(self.manifest, self.out_dir)
        return paths
