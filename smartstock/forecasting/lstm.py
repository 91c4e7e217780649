"""The global demand LSTM on the device: an exported ONNX/TFLite model run through the vision backends.

No TensorFlow here. One network serves every SKU: each input window is divided by its own mean
level (per-series scaling, recorded in the manifest), so the model only learns shapes. Prediction
intervals come from the model's own errors on the SKU's history (sliding windows, per step ahead).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from smartstock.errors import ConfigError
from smartstock.forecasting.base import Forecaster, ForecasterConfig, register, residual_sigma
from smartstock.forecasting.lstm_manifest import DemandManifest, golden_check, load_demand_manifest, verify

logger = logging.getLogger(__name__)


def make_inputs(windows: np.ndarray, manifest: DemandManifest, phase: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """(model input (N, window, features) float32, scale (N,)) from raw windows (N, window).

    `phase` is the season position of each window's first point (calendar features only).
    """
    w = np.asarray(windows, np.float64)
    scale = np.maximum(np.mean(np.abs(w), axis=1), manifest.scaling.floor)
    feats = [w / scale[:, None]]
    if len(manifest.features) > 1:
        m = manifest.season_length
        pos = (np.zeros(len(w)) if phase is None else np.asarray(phase))[:, None] + np.arange(w.shape[1])[None, :]
        ang = 2.0 * np.pi * (pos % m) / m
        for f in manifest.features[1:]:
            feats.append(np.sin(ang) if f == "season_sin" else np.cos(ang))
    return np.stack(feats, axis=-1).astype(np.float32), scale


class LstmRunner:
    """A loaded demand model: `predict_windows(raw (N, window)) -> (N, horizon)` in units."""

    def __init__(self, model_path: Path, *, backend: str = "auto", threads: int = 1) -> None:
        from smartstock.runtime.backends import backend_for_path, load_backend

        self.path = Path(model_path)
        self.manifest = load_demand_manifest(self.path)
        verify(self.path, self.manifest)
        self.format = "onnx" if backend_for_path(self.path, backend) == "onnx" else "tflite"
        self.backend = load_backend(self.path, backend, threads=threads, warmup=1)
        self.golden_diff = golden_check(self._run, self.manifest, self.format)
        self._lock = threading.Lock()  # LiteRT interpreters are not re-entrant

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.backend.run(x)

    def predict_windows(self, windows: np.ndarray, phase: np.ndarray | None = None, batch: int = 1024) -> np.ndarray:
        x, scale = make_inputs(windows, self.manifest, phase)
        out = []
        with self._lock:
            for i in range(0, len(x), batch):
                out.append(np.asarray(self.backend.run(x[i:i + batch]), np.float64))
        return np.vstack(out) * scale[:, None]


_RUNNERS: dict[tuple[str, str], LstmRunner] = {}


def get_runner(model_path: Path, backend: str = "auto") -> LstmRunner:
    """Load once per process; every SKU shares the model."""
    key = (str(Path(model_path).resolve()), backend)
    if key not in _RUNNERS:
        _RUNNERS[key] = LstmRunner(Path(model_path), backend=backend)
    return _RUNNERS[key]


class LstmConfig(ForecasterConfig):
    type: Literal["lstm"] = "lstm"
    model_path: Path | None = Field(None, description="Exported .onnx or .tflite with manifest.json beside it")
    backend: Literal["auto", "onnx", "tflite"] = Field("auto", description="Runtime; auto = by file type")
    phase: int = Field(0, ge=0, description="Season position of the first history point (calendar features)")


@register
class Lstm(Forecaster):
    """Global LSTM forecaster; longer horizons than the model's are produced recursively."""

    Config = LstmConfig

    @classmethod
    def job_options(cls, job: Any) -> dict[str, Any]:
        return {"model_path": job.lstm_model, "phase": job.phase % max(1, job.season_length)}

    def _fit(self, y: np.ndarray) -> None:
        if self.config.model_path is None:
            raise ConfigError("the lstm forecaster needs a model file", hint="pass --lstm-model FILE.onnx|.tflite")
        self.runner = get_runner(self.config.model_path, self.config.backend)
        w = self.runner.manifest.window
        if len(y) < w:  # pad with the earliest level: a short SKU still gets a forecast
            y = np.r_[np.full(w - len(y), y[0]), y]
            self._pad = True
        else:
            self._pad = False
        self._hist = y
        self._phase0 = self.config.phase - (len(y) - len(self._y))  # padding shifts the start back
        self._step_sigma = self._history_errors(y)

    def _history_errors(self, y: np.ndarray) -> np.ndarray | None:
        """RMSE per step ahead of the model on this SKU's own past (last 50 windows at most)."""
        m = self.runner.manifest
        n_win = len(y) - m.window - m.horizon + 1
        if n_win < 2 or self._pad:
            return None
        starts = np.arange(max(0, n_win - 50), n_win)
        wins = np.stack([y[s:s + m.window] for s in starts])
        actual = np.stack([y[s + m.window:s + m.window + m.horizon] for s in starts])
        pred = self.runner.predict_windows(wins, self._phase0 + starts)
        return np.sqrt(np.mean((actual - pred) ** 2, axis=0))

    def _predict(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        m = self.runner.manifest
        hist = self._hist.copy()
        out: list[float] = []
        while len(out) < h:
            start = len(hist) - m.window
            pred = self.runner.predict_windows(hist[-m.window:][None, :], np.array([self._phase0 + start]))[0]
            out.extend(pred.tolist())
            hist = np.r_[hist, pred]
        mean = np.array(out[:h])
        if self._step_sigma is not None:
            sig = self._step_sigma
            reps = np.ceil(np.arange(1, h + 1) / len(sig))  # beyond the model horizon: grow like a random walk
            sigma = sig[np.minimum(np.arange(h), len(sig) - 1)] * np.sqrt(np.maximum(1.0, reps))
        else:
            sigma = residual_sigma(np.diff(self._y)) * np.sqrt(np.arange(1, h + 1)) if len(self._y) > 1 else np.zeros(h)
        return mean, sigma
