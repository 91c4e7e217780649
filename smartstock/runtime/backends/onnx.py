"""ONNX Runtime backend; execution providers (TensorRT, CUDA, CPU) chosen by smartstock.runtime.providers."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Literal

import numpy as np

from pydantic import Field

from smartstock.errors import BackendUnavailable, ModelError
from smartstock.runtime.backends.base import BackendConfig, InferenceBackend
from smartstock.runtime.providers import ORT_NAMES, SHORT_NAMES, choose_providers, engine_cache_dir

logger = logging.getLogger(__name__)


class OnnxBackendConfig(BackendConfig):
    type: Literal["onnx"] = "onnx"
    providers: tuple[str, ...] = Field(("cpu",), description="Execution providers in priority order (auto = "
                                       "tensorrt, cuda, cpu where available)")
    trt_fp16: bool = Field(False, description="Let TensorRT run in FP16")
    trt_cache_root: Path | None = Field(None, description="Folder for TensorRT engine caches (state_dir/trt-cache); "
                                        "each model file gets its own sub-folder (providers.engine_cache_dir)")
    model_sha256: str | None = Field(None, description="The model file's sha256 (from its manifest), keys the cache")
    io_binding: bool = Field(False, description="Run through an ONNX Runtime IO binding into preallocated output "
                             "buffers (per thread and batch size) instead of session.run; off by default: no gain "
                             "on CPU (benchmarks/bench_providers.py), meant for GPU providers")


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
        cache = (engine_cache_dir(config.trt_cache_root, config.model_sha256, ort.__version__)
                 if config.trt_cache_root is not None and config.model_sha256 else None)
        providers, warnings = choose_providers(config.providers, ort.get_available_providers(),
                                               trt_fp16=config.trt_fp16, trt_cache_dir=cache)
        if cache is not None and any(name == ORT_NAMES["tensorrt"] for name, _ in providers):
            cache.mkdir(parents=True, exist_ok=True)
        for w in warnings:
            logger.warning("%s: %s", model_path.name, w)
        try:
            self._session = ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own untyped errors for bad files
            raise ModelError(f"{model_path}: ONNX Runtime cannot load the model: {str(e).splitlines()[0][:300]}",
                             hint="the file is corrupt or not an ONNX model; re-export or re-copy it") from None
        serving = self._session.get_providers()
        #: the provider that actually runs the model (onnxruntime drops one that fails to initialise)
        self.provider = SHORT_NAMES.get(serving[0], serving[0]) if serving else "cpu"
        self.provider_precision = "fp16" if self.provider == "tensorrt" and config.trt_fp16 else "fp32"
        if providers[0][0] not in serving:
            logger.warning("%s: %s failed to initialise; running on %s", model_path.name, providers[0][0], self.provider)
        inp = self._session.get_inputs()[0]
        out = self._session.get_outputs()[0]
        self._input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in inp.shape)
        self.output_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in out.shape)
        self.check_batch_axis()
        if "float" not in inp.type:
            raise ModelError(f"{model_path}: input type {inp.type} is not supported (expected float32)")
        self._output_name = out.name
        self._io_binding = config.io_binding and all(self.output_shape[1:])
        if config.io_binding and not self._io_binding:
            logger.warning("%s: output shape %s is not fixed past the batch: io_binding off", model_path.name, out.shape)
        self._bound = threading.local()  # per worker thread: its binding and output buffers by batch size

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.input_shape[0] is not None and batch.shape[0] != self.input_shape[0]:  # fixed-batch export
            return np.concatenate([self._run_fixed(batch[i:i + 1]) for i in range(batch.shape[0])])
        return self._run_fixed(batch)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self._session.get_outputs())

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every model output by name, for one checked batch (a good-only detector's heat map is its second)."""
        batch = self.checked(batch)
        if self.input_shape[0] is not None and batch.shape[0] != self.input_shape[0]:  # fixed-batch export
            parts = [self.run_outputs(batch[i:i + 1]) for i in range(batch.shape[0])]
            return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        return dict(zip(self.output_names, self._session.run(None, {self._input_name: batch})))

    def _run_fixed(self, batch: np.ndarray) -> np.ndarray:
        if self._io_binding:
            return self._run_bound(batch)
        return np.asarray(self._session.run(None, {self._input_name: batch})[0], dtype=np.float32)

    def _run_bound(self, batch: np.ndarray) -> np.ndarray:
        """One call through this thread's IO binding, the output written into a buffer preallocated for
        this batch size; a copy is returned (the buffer is reused by the thread's next call)."""
        bound = self._bound
        if getattr(bound, "binding", None) is None:
            bound.binding, bound.outputs = self._session.io_binding(), {}
        n = batch.shape[0]
        out = bound.outputs.get(n)
        if out is None:
            out = bound.outputs[n] = np.empty((n, *(d or 1 for d in self.output_shape[1:])), np.float32)
        binding = bound.binding
        binding.bind_cpu_input(self._input_name, batch)
        binding.bind_output(self._output_name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        self._session.run_with_iobinding(binding)
        return out.copy()
