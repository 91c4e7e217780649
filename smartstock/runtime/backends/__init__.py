"""Inference backends (plugins) and their registry: pick one by type key or by model file suffix.

A backend is a config class with a `type` key and an `InferenceBackend` implementation in its own
module; adding one is one entry in `BACKENDS`. The modules are light: each imports its runtime
(onnxruntime, LiteRT) only when a model is loaded. `vision.backend` in the config is validated
against `BACKEND_CHOICES`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from smartstock.errors import ConfigError, ModelError
from smartstock.runtime.backends.base import BackendConfig, InferenceBackend
from smartstock.runtime.backends.litert import LiteRTBackend, LiteRTBackendConfig
from smartstock.runtime.backends.onnx import OnnxBackend, OnnxBackendConfig

logger = logging.getLogger(__name__)

# type key -> (config class, implementation)
BACKENDS: dict[str, tuple[type[BackendConfig], type[InferenceBackend]]] = {
    OnnxBackend.type: (OnnxBackendConfig, OnnxBackend),
    LiteRTBackend.type: (LiteRTBackendConfig, LiteRTBackend),
}
BACKEND_CHOICES = ("auto", *BACKENDS)
_BY_SUFFIX = {suffix: key for key, (_, impl) in BACKENDS.items() for suffix in impl.suffixes}


def backend_for_path(model_path: Path, backend: str = "auto") -> str:
    """Type key for a model file: `auto` picks by suffix; an explicit key must match the file type."""
    suffix = Path(model_path).suffix.lower()
    by_suffix = _BY_SUFFIX.get(suffix)
    if backend == "auto":
        if by_suffix is None:
            raise ModelError(f"{model_path}: unknown model file type {suffix!r}",
                             hint=f"use an exported model file ({', '.join(sorted(_BY_SUFFIX))})")
        return by_suffix
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}", hint=f"use one of: {', '.join(BACKEND_CHOICES)}")
    if by_suffix is not None and by_suffix != backend:
        raise ConfigError(f"backend {backend!r} cannot run {Path(model_path).name}",
                          hint=f"use backend = \"auto\" or \"{by_suffix}\" for {suffix} files")
    return backend


def load_backend(model_path: Path, backend: str = "auto", *, threads: int = 2, warmup: int = 1,
                 **options: Any) -> InferenceBackend:
    """Load a model file with the chosen runtime and warm it up (before the first part is served).
    `options` go to that backend's config (e.g. providers for ONNX Runtime); unknown ones are refused."""
    model_path = Path(model_path)
    key = backend_for_path(model_path, backend)
    if not model_path.is_file():
        raise ModelError(f"{model_path}: model file not found", hint="check vision.model in the config")
    config_cls, impl_cls = BACKENDS[key]
    impl = impl_cls(model_path, config_cls(threads=threads, warmup=warmup, **options))
    impl.warm_up()
    logger.info("loaded %s with %s on %s (%d threads)", model_path.name, key, impl.provider, threads)
    return impl


__all__ = ["BACKENDS", "BACKEND_CHOICES", "BackendConfig", "InferenceBackend", "backend_for_path", "load_backend"]
