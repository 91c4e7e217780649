"""LiteRT backend (`ai-edge-litert`, falling back to `tflite-runtime`) for float and int8 models.

int8 models take and return quantised tensors: inputs are quantised and outputs dequantised here
with each tensor's own scale and zero point, so callers always see float scores.

A model with several outputs (the good-only detector: `scores` and `heatmap`) names them in its
signature; `run` returns the one named `scores` (else the first), `run_outputs` all of them by name.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

from smartstock.errors import BackendUnavailable, ModelError
from smartstock.runtime.backends.base import BackendConfig, InferenceBackend

logger = logging.getLogger(__name__)

#: Output `run` returns when a model has several (the good-only detector's scores beside its heat map).
PRIMARY_OUTPUT = "scores"


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


class _Interpreter:
    """One LiteRT interpreter and its current tensor details (interpreters are not thread-safe)."""

    def __init__(self, model_path: Path, threads: int) -> None:
        Interpreter = interpreter_class()
        try:
            self.interp = Interpreter(model_path=str(model_path), num_threads=threads)
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{model_path}: LiteRT cannot load the model: {str(e).splitlines()[0][:300]}",
                             hint="the file is corrupt or not a TFLite model; re-export or re-copy it") from None
        self.inp = self.interp.get_input_details()[0]
        self._details()
        self.batch = int(self.inp["shape"][0])

    def _details(self) -> None:
        """Output details by name (the signature's names, else the tensor names) and the primary output."""
        by_index = {d["index"]: d for d in self.interp.get_output_details()}
        signatures = self.interp.get_signature_list()
        names: dict[str, int] = {}
        if len(signatures) == 1:  # names given at export (a TFLite file from a saved model has one signature)
            runner = self.interp.get_signature_runner(next(iter(signatures)))
            names = {name: d["index"] for name, d in runner.get_output_details().items() if d["index"] in by_index}
        if len(names) != len(by_index):
            names = {d["name"]: i for i, d in by_index.items()}
        self.outs = {name: by_index[i] for name, i in names.items()}
        first = self.interp.get_output_details()[0]
        self.out = self.outs.get(PRIMARY_OUTPUT, first) if len(self.outs) > 1 else first

    def resize(self, n: int) -> None:
        if n == self.batch:
            return
        self.interp.resize_tensor_input(self.inp["index"], [n, *self.inp["shape"][1:]])
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self._details()
        self.batch = n


class LiteRTBackend(InferenceBackend):
    """Thread-safe: each calling thread gets its own interpreter of the same model (made on first use),
    so several inference workers can share one loaded backend."""

    type = "tflite"
    suffixes = (".tflite",)

    def __init__(self, model_path: Path, config: LiteRTBackendConfig) -> None:
        super().__init__(model_path, config)
        first = _Interpreter(model_path, config.threads)
        self._local = threading.local()
        self._local.interp = first
        self._in, self._out = first.inp, first.out
        sig = self._in.get("shape_signature", self._in["shape"])
        self.input_shape = tuple(None if d < 0 else int(d) for d in sig)
        osig = self._out.get("shape_signature", self._out["shape"])
        self.output_shape = tuple(None if d < 0 else int(d) for d in osig)
        self.check_batch_axis()
        self._in_q = self._in["quantization"] if self._in["dtype"] != np.float32 else None
        self._out_q = self._out["quantization"] if self._out["dtype"] != np.float32 else None

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._in["dtype"])

    @property
    def quantized(self) -> bool:
        return self._in_q is not None

    def _interpreter(self) -> _Interpreter:
        it = getattr(self._local, "interp", None)
        if it is None:
            it = self._local.interp = _Interpreter(self.model_path, self.config.threads)
        return it

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.input_shape[0] is not None and batch.shape[0] != self.input_shape[0]:  # fixed-batch export
            return np.concatenate([self._run(batch[i:i + 1]) for i in range(batch.shape[0])])
        it = self._invoke(batch)
        return _read(it.interp, it.out)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self._interpreter().outs)

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every model output by name, for one checked batch (a good-only detector's heat map beside its scores)."""
        batch = self.checked(batch)
        if self.input_shape[0] is not None and batch.shape[0] != self.input_shape[0]:  # fixed-batch export
            parts = [self.run_outputs(batch[i:i + 1]) for i in range(batch.shape[0])]
            return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        it = self._invoke(batch)
        return {name: _read(it.interp, d) for name, d in it.outs.items()}

    def _invoke(self, batch: np.ndarray) -> _Interpreter:
        it = self._interpreter()
        it.resize(batch.shape[0])
        x = batch
        if self._in_q is not None:
            scale, zp = self._in_q
            x = quantize(batch, scale, zp, np.dtype(self._in["dtype"]))
        it.interp.set_tensor(it.inp["index"], x)
        it.interp.invoke()
        return it


def _read(interp: Any, detail: dict[str, Any]) -> np.ndarray:
    """One output tensor as float32 (dequantised with its own scale and zero point when quantised)."""
    y = interp.get_tensor(detail["index"])
    if detail["dtype"] != np.float32:
        scale, zp = detail["quantization"]
        return dequantize(y, scale, zp)
    return np.array(y, dtype=np.float32)
