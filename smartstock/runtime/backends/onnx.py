"""ONNX Runtime backend (CPU execution provider)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np

from smartstock.errors import BackendUnavailable, ModelError
from smartstock.runtime.backends.base import BackendConfig, InferenceBackend

logger = logging.getLogger(__name__)


class OnnxBackendConfig(BackendConfig):
    type: Literal["onnx"] = "onnx"


class OnnxBackend(InferenceBackend):
    type = "onnx"
    suffixes = (".onnx",)

    def __init__(self, model_path: Path, config: OnnxBackendConfig) -> None:
        super().__init__(model_path, config)
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailable("ONNX Runtime is not installed", hint="pip install 'smartstock[edge]'") from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = config.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors for bad files
            raise ModelError(f"{model_path}: ONNX Runtime cannot load the model: {str(e).splitlines()[0][:300]}",
                             hint="the file is corrupt or not an ONNX model; re-export or re-copy it") from None
        inp = self._session.get_inputs()[0]
        out = self._session.get_outputs()[0]
        self._input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in inp.shape)
        self.output_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in out.shape)
        if "float" not in inp.type:
            raise ModelError(f"{model_path}: input type {inp.type} is not supported (expected float32)")

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.input_shape[0] is not None and batch.shape[0] != self.input_shape[0]:  # fixed-batch export
            return np.concatenate([self._run_fixed(batch[i:i + 1]) for i in range(batch.shape[0])])
        return self._run_fixed(batch)

    def _run_fixed(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {self._input_name: batch})[0], dtype=np.float32)
