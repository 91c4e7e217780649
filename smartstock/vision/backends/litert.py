"""LiteRT backend (`ai-edge-litert`, falling back to `tflite-runtime`) for float and int8 models.

int8 models take and return quantised tensors: inputs are quantised and outputs dequantised here
with each tensor's own scale and zero point, so callers always see float scores.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np

from smartstock.errors import BackendUnavailable, ModelError
from smartstock.vision.backends.base import BackendConfig, InferenceBackend

logger = logging.getLogger(__name__)


class LiteRTBackendConfig(BackendConfig):
    type: Literal["tflite"] = "tflite"


def interpreter_class() -> Any:
    """The LiteRT Interpreter class, or BackendUnavailable naming the extra."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        return Interpreter
    except ImportError as e:
        raise BackendUnavailable("LiteRT is not installed (neither ai-edge-litert nor tflite-runtime)",
                                 hint="pip install 'smartstock[edge]'") from e


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


class LiteRTBackend(InferenceBackend):
    type = "tflite"
    suffixes = (".tflite",)

    def __init__(self, model_path: Path, config: LiteRTBackendConfig) -> None:
        super().__init__(model_path, config)
        Interpreter = interpreter_class()
        try:
            self._interp = Interpreter(model_path=str(model_path), num_threads=config.threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{model_path}: LiteRT cannot load the model: {str(e).splitlines()[0][:300]}",
                             hint="the file is corrupt or not a TFLite model; re-export or re-copy it") from None
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        sig = self._in.get("shape_signature", self._in["shape"])
        self.input_shape = tuple(None if d < 0 else int(d) for d in sig)
        osig = self._out.get("shape_signature", self._out["shape"])
        self.output_shape = tuple(None if d < 0 else int(d) for d in osig)
        self._batch = int(self._in["shape"][0])
        self._in_q = self._in["quantization"] if self._in["dtype"] != np.float32 else None
        self._out_q = self._out["quantization"] if self._out["dtype"] != np.float32 else None

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._in["dtype"])

    @property
    def quantized(self) -> bool:
        return self._in_q is not None

    def _resize(self, n: int) -> None:
        if n == self._batch:
            return
        self._interp.resize_tensor_input(self._in["index"], [n, *self._in["shape"][1:]])
        self._interp.allocate_tensors()
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        self._batch = n

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.input_shape[0] is not None and batch.shape[0] != self.input_shape[0]:  # fixed-batch export
            return np.concatenate([self._run(batch[i:i + 1]) for i in range(batch.shape[0])])
        self._resize(batch.shape[0])
        x = batch
        if self._in_q is not None:
            scale, zp = self._in_q
            x = quantize(batch, scale, zp, np.dtype(self._in["dtype"]))
        self._interp.set_tensor(self._in["index"], x)
        self._interp.invoke()
        y = self._interp.get_tensor(self._out["index"])
        if self._out_q is not None:
            scale, zp = self._out_q
            return dequantize(y, scale, zp)
        return np.array(y, dtype=np.float32)
