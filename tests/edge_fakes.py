"""Fakes of our OWN interfaces (FrameSource, DefectClassifier) for loop tests; real parts elsewhere."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np

from edge.capture.base import CorruptFrame, Frame, FrameSource, SourceLost


class FakeFrameSource(FrameSource):
    """Yields `n` frames (image i has every pixel = images[i]); scriptable failures.

    `corrupt_at`: indices that raise CorruptFrame; `lose_at`: index at which SourceLost is raised once;
    `fps`: pace as a live camera would (realtime); 0 = replay (not realtime).
    """

    kind = "fake"

    def __init__(self, images: list[np.ndarray], *, fps: float = 0.0, corrupt_at: set[int] | None = None,
                 lose_at: int | None = None) -> None:
        self.images = images
        self.realtime = fps > 0
        self.fps = fps
        self.corrupt_at = corrupt_at or set()
        self.lose_at = lose_at
        self.i = 0
        self.closed = False
        self._wake = threading.Event()
        self._next = time.monotonic()

    @property
    def ended(self) -> bool:
        return self.i >= len(self.images)

    def read(self, timeout: float) -> Frame | None:
        if self.closed or self.ended:
            return None
        if self.fps:
            delay = self._next - time.monotonic()
            if delay > 0:
                self._wake.wait(min(delay, timeout))
                if delay > timeout:
                    return None
            self._next = max(self._next + 1 / self.fps, time.monotonic() - 1)
        i = self.i
        self.i += 1
        if i == self.lose_at:
            self.lose_at = None
            raise SourceLost("fake device unplugged")
        if i in self.corrupt_at:
            raise CorruptFrame(f"frame {i} corrupt")
        return Frame(image=self.images[i], index=i + 1, name=f"f{i}")

    def close(self) -> None:
        self.closed = True
        self._wake.set()


@dataclass
class FakeClassification:
    label: str
    score: float
    scores: dict[str, float]
    is_defect: bool
    latency_ms: float
    margin: float = 1.0
    heatmap: None = None


@dataclass
class FakeClassifier:
    """Same interface as smartstock.vision.classifier.DefectClassifier: defect when the mean pixel > 127."""

    model_id: str = "fake-model"
    release: int = 1
    model_path: Path = Path("fake-model.onnx")
    labels: list[str] = field(default_factory=lambda: ["ok", "defect"])
    thresholds: dict[str, float] = field(default_factory=lambda: {"defect": 0.5})
    provider: str = "cpu"
    roi: tuple[int, int, int, int] | None = None
    delay_s: float = 0.0
    calls: list[int] = field(default_factory=list)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return image  # nothing to preprocess: classify_batch takes the image

    def classify_batch(self, frames: list[np.ndarray]) -> list[FakeClassification]:
        self.calls.append(len(frames))
        if self.delay_s:
            threading.Event().wait(self.delay_s * len(frames))
        out = []
        for f in frames:
            d = float(f.mean()) > 127
            out.append(FakeClassification("defect" if d else "ok", 0.9, {"ok": 0.1 if d else 0.9, "defect": 0.9 if d else 0.1},
                                          d, 1.0))
        return out

    def classify(self, frame: np.ndarray) -> FakeClassification:
        return self.classify_batch([frame])[0]


def flat_images(values: list[int], size: int = 32) -> list[np.ndarray]:
    return [np.full((size, size, 3), v, np.uint8) for v in values]
