"""The InferenceBackend interface and the registry that picks a backend by type key or file suffix.

Each backend module holds a config class with a `type` key and an implementation; the runtime it
needs is imported only when a model is loaded, and a missing one raises BackendUnavailable naming
the extra to install (only that backend is unusable).
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from smartstock.errors import ConfigError, InputError, ModelError

logger = logging.getLogger(__name__)


class BackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    threads: int = Field(2, ge=1, le=64, description="Intra-op threads")
    warmup: int = Field(1, ge=0, le=100, description="Inference runs at load so the first frame is not slow")


class InferenceBackend(ABC):
    """One loaded model: `run(batch)` maps a float32 NHWC batch (0..255) to float32 scores."""

    type: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    #: Model input/output shapes, set at load; None marks a dynamic axis (the batch).
    input_shape: tuple[int | None, ...]
    output_shape: tuple[int | None, ...]

    def __init__(self, model_path: Path, config: BackendConfig) -> None:
        self.model_path = Path(model_path)
        self.config = config

    @property
    @abstractmethod
    def input_dtype(self) -> np.dtype:
        """dtype of the model tensor itself (int8 models quantise inside run())."""

    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray: ...

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Scores for a batch (N, *sample_shape); checks the sample shape so a mismatch is a clear error."""
        batch = np.asarray(batch)
        expected = tuple(self.input_shape[1:])
        if batch.ndim != len(self.input_shape) or tuple(batch.shape[1:]) != expected or batch.shape[0] < 1:
            raise InputError(f"{self.model_path.name}: batch shape {batch.shape} does not match the model input "
                             f"(N, {', '.join(map(str, expected))})",
                             hint="preprocess inputs as the model's manifest describes")
        return self._run(np.ascontiguousarray(batch, dtype=np.float32))

    def warm_up(self) -> None:
        sample = tuple(d if d else 1 for d in self.input_shape)
        for _ in range(self.config.warmup):
            self._run(np.zeros(sample, np.float32))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_path.name}, threads={self.config.threads})"


# type key -> "module:Class"; modules are imported only when that backend is used.
_REGISTRY: dict[str, str] = {
    "onnx": "smartstock.runtime.backends.onnx:OnnxBackend",
    "tflite": "smartstock.runtime.backends.litert:LiteRTBackend",
}
_SUFFIXES = {".onnx": "onnx", ".tflite": "tflite"}


def _config_classes() -> dict[str, type[BackendConfig]]:
    from smartstock.runtime.backends.litert import LiteRTBackendConfig
    from smartstock.runtime.backends.onnx import OnnxBackendConfig

    return {"onnx": OnnxBackendConfig, "tflite": LiteRTBackendConfig}


BACKEND_CONFIGS = _REGISTRY  # public: the known type keys


def backend_for_path(model_path: Path, backend: str = "auto") -> str:
    """Type key for a model file: `auto` picks by suffix; an explicit key must match the file type."""
    suffix = Path(model_path).suffix.lower()
    by_suffix = _SUFFIXES.get(suffix)
    if backend == "auto":
        if by_suffix is None:
            raise ModelError(f"{model_path}: unknown model file type {suffix!r}",
                             hint="use an exported .onnx or .tflite file")
        return by_suffix
    if backend not in _REGISTRY:
        raise ConfigError(f"unknown backend {backend!r}", hint=f"use one of: auto, {', '.join(_REGISTRY)}")
    if by_suffix is not None and by_suffix != backend:
        raise ConfigError(f"backend {backend!r} cannot run {Path(model_path).name}",
                          hint=f"use backend = \"auto\" or \"{by_suffix}\" for {suffix} files")
    return backend


def load_backend(model_path: Path, backend: str = "auto", *, threads: int = 2, warmup: int = 1) -> InferenceBackend:
    """Load a model file with the chosen runtime and warm it up."""
    model_path = Path(model_path)
    key = backend_for_path(model_path, backend)
    if not model_path.is_file():
        raise ModelError(f"{model_path}: model file not found", hint="check vision.model in the config")
    module_name, cls_name = _REGISTRY[key].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    config = _config_classes()[key](threads=threads, warmup=warmup)
    impl: InferenceBackend = cls(model_path, config)
    impl.warm_up()
    logger.info("loaded %s with %s (%d threads)", model_path.name, key, threads)
    return impl
