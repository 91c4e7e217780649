"""Good-parts-only detector on the device: one more model kind behind the DefectClassifier interface.

The exported file (ONNX, or TFLite float / int8 backbone with a float tail) holds the frozen feature
network, the memory bank of good patches and the nearest-neighbour search (training.goodonly), so the
device runs it with ONNX Runtime or LiteRT alone and the decision rule, OTA install, golden samples and
trial are the classifier's. What it adds: each
Classification carries the anomaly heat map (patch scores, 0.5 = on the threshold), which the edge
loop saves beside a defect snapshot.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from smartstock.errors import ModelError
from smartstock.runtime.backends import InferenceBackend
from smartstock.vision.classifier import Classification, DefectClassifier, Prepared
from smartstock.vision.manifest import Manifest
from smartstock.vision.preprocess import Roi

logger = logging.getLogger(__name__)


class AnomalyDetector(DefectClassifier):
    """A DefectClassifier whose model scores anything unlike the good parts it was built from."""

    def __init__(self, backend: InferenceBackend, manifest: Manifest, model_path: Path, *,
                 roi: Roi | None = None, thresholds: dict[str, float] | None = None) -> None:
        if manifest.anomaly is None:
            raise ModelError(f"{model_path}: manifest has no `anomaly` section", hint="load it as a DefectClassifier")
        missing = {"scores", manifest.anomaly.heatmap_output} - set(backend.output_names)
        if missing:  # fail at load, not on the first frame in an inference worker
            raise ModelError(f"{model_path}: the model has no output named {', '.join(sorted(missing))} "
                             f"(it has {', '.join(backend.output_names) or 'none'}); a good-only detector needs "
                             f"`scores` and its heat map `{manifest.anomaly.heatmap_output}`",
                             hint="re-export the detector with `smartstock train cnn` on an ok/-only folder, or "
                                  "restore the manifest exported with this file")
        super().__init__(backend, manifest, model_path, roi=roi, thresholds=thresholds)
        self.heatmap_output = manifest.anomaly.heatmap_output
        self._local = threading.local()

    def scores_batch(self, frames: Sequence[np.ndarray | Prepared]) -> np.ndarray:
        """Scores (N, 2); the heat maps of the same call wait in a per-thread slot for classify_batch."""
        if len(frames) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        out = self.backend.run_outputs(self.model_input(frames))
        self._local.heat = out[self.heatmap_output]
        return out["scores"]

    def classify_batch(self, frames: Sequence[np.ndarray | Prepared]) -> list[Classification]:
        """The classifier's results (same decision rule and fields), each with its heat map (h, w) in [0, 1].
        Each inference worker is its own thread, so the per-thread slot pairs a batch with its maps."""
        self._local.heat = None
        results = super().classify_batch(frames)
        heat, self._local.heat = self._local.heat, None
        if heat is None or len(heat) != len(results):
            return results
        return [replace(r, heatmap=h) for r, h in zip(results, heat)]


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, roi: Roi | None = None) -> np.ndarray:
    """BGR picture of the part with the heat map blended in (red = far from every good patch)."""
    import cv2

    img = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    img = img[..., :3].astype(np.uint8)
    x, y, w, h = roi if roi is not None else (0, 0, img.shape[1], img.shape[0])
    heat = cv2.resize(np.clip(heatmap, 0, 1).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    out = img.copy()
    out[y:y + h, x:x + w] = cv2.addWeighted(img[y:y + h, x:x + w], 0.55, colour, 0.45, 0)
    return out
