"""Inference backends (plugins): ONNX Runtime and LiteRT, chosen by file type or config."""

from smartstock.runtime.backends.base import (BACKEND_CONFIGS, BackendConfig, InferenceBackend, backend_for_path,
                                             load_backend)

__all__ = ["BACKEND_CONFIGS", "BackendConfig", "InferenceBackend", "backend_for_path", "load_backend"]
