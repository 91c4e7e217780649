"""Which frames are parts: every frame, every Nth, or a part arriving (motion in the ROI).

Motion trigger: the mean absolute change of a small grey ROI thumbnail against the previous frame.
After motion, once the scene has been still (under half the threshold) for `settle_frames` frames,
the still frame is compared with the empty-belt background: different -> a part is in place and is
inspected on that (unblurred) frame; same -> the belt was emptied, nothing is counted. A part passing
slowly therefore counts once, and a part leaving does not count at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def roi_thumb(image: np.ndarray, roi: tuple[int, int, int, int] | None, size: int = 32) -> np.ndarray:
    """Grey, downscaled ROI as float32; cheap enough for every frame."""
    if roi is not None:
        x, y, w, h = roi
        image = image[y:y + h, x:x + w]
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


def mean_abs_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails (0..255)."""
    return float(np.mean(np.abs(a - b)))


class Trigger:
    """`is_part(image) -> bool`, called once per captured frame in order."""

    def is_part(self, image: np.ndarray) -> bool:  # pragma: no cover - interface
        raise NotImplementedError


class EveryFrame(Trigger):
    def is_part(self, image: np.ndarray) -> bool:
        return True


@dataclass
class EveryNth(Trigger):
    n: int
    _seen: int = 0

    def is_part(self, image: np.ndarray) -> bool:
        self._seen += 1
        return (self._seen - 1) % self.n == 0


class MotionTrigger(Trigger):
    def __init__(self, threshold: float, roi: tuple[int, int, int, int] | None = None, settle_frames: int = 2) -> None:
        self.threshold = threshold
        self.roi = roi
        self.settle_frames = settle_frames
        self._prev: np.ndarray | None = None
        self._background: np.ndarray | None = None  # the empty scene (first frame, then each settled empty one)
        self._moving = False
        self._still = 0

    def is_part(self, image: np.ndarray) -> bool:
        thumb = roi_thumb(image, self.roi)
        prev, self._prev = self._prev, thumb
        if prev is None:
            self._background = thumb
            return False
        change = mean_abs_change(thumb, prev)
        if change > self.threshold:
            self._moving, self._still = True, 0
            return False
        if change < self.threshold / 2:
            self._still += 1
            if self._moving and self._still >= self.settle_frames:
                self._moving = False
                if self._background is None or mean_abs_change(thumb, self._background) > self.threshold:
                    return True
                self._background = thumb  # settled back to empty: follow slow lighting changes
        return False


def make_trigger(mode: str, *, every_n: int = 1, motion_threshold: float = 12.0,
                 roi: tuple[int, int, int, int] | None = None) -> Trigger:
    if mode == "nth":
        return EveryNth(every_n)
    if mode == "motion":
        return MotionTrigger(motion_threshold, roi)
    return EveryFrame()
