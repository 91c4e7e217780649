"""The InferenceBackend interface and the base of every backend's config.

Each backend module holds a config class with a `type` key and an implementation; the runtime it
needs is imported only when a model is loaded, and a missing one raises BackendUnavailable naming
the extra to install (only that backend is unusable). The registry is the package's `__init__`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from smartstock.errors import InputError, ModelError

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
        return self._run(self.checked(batch))

    def checked(self, batch: np.ndarray) -> np.ndarray:
        """The batch as contiguous float32, or an InputError when its sample shape is not the model's."""
        batch = np.asarray(batch)
        expected = tuple(self.input_shape[1:])
        if batch.ndim != len(self.input_shape) or tuple(batch.shape[1:]) != expected or batch.shape[0] < 1:
            raise InputError(f"{self.model_path.name}: batch shape {batch.shape} does not match the model input "
                             f"(N, {', '.join(map(str, expected))})",
                             hint="preprocess inputs as the model's manifest describes")
        return np.ascontiguousarray(batch, dtype=np.float32)

    def check_batch_axis(self) -> None:
        """A model takes any batch (dynamic axis) or one frame at a time; the backends split larger batches
        into single frames, which a model exported for a fixed batch of N > 1 cannot take."""
        if self.input_shape and self.input_shape[0] not in (None, 1):
            raise ModelError(f"{self.model_path}: the model takes batches of exactly {self.input_shape[0]} frames",
                             hint="export it with a dynamic batch axis (or batch 1), as `smartstock train` does")

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names `run_outputs` returns (the model's own output names where the runtime gives them)."""
        return ("scores",)

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every model output by name (a good-only detector's heat map beside its scores)."""
        return {"scores": self.run(batch)}

    def warm_up(self) -> None:
        sample = tuple(d if d else 1 for d in self.input_shape)
        for _ in range(self.config.warmup):
            self._run(np.zeros(sample, np.float32))

    #: where the model runs ("cpu", "cuda", "tensorrt"); backends with accelerators set it at load
    provider: str = "cpu"
    #: the precision the provider runs the float model in ("fp32", or "fp16" for TensorRT FP16)
    provider_precision: str = "fp32"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_path.name}, threads={self.config.threads})"
