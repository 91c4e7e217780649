"""JPEG snapshots of defective parts under a disk quota; the oldest are deleted first."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from smartstock.store.snapshots import snapshot_file

logger = logging.getLogger(__name__)


class SnapshotStore:
    """Writes `<ts>_<event_id>.jpg` into one folder and keeps the folder under `max_bytes`.
    Thread-safe: several inference workers save at once (encoding and writing run in parallel)."""

    def __init__(self, folder: Path, max_bytes: int, quality: int = 85) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.quality = quality
        self.deleted = 0
        self.failed = 0
        files = sorted((p for p in self.folder.glob("*.jpg")), key=lambda p: p.name)  # names start with the time
        self._files: deque[tuple[str, int]] = deque((p.name, p.stat().st_size) for p in files)
        self.bytes = sum(s for _, s in self._files)
        self._lock = threading.Lock()
        self._enforce()

    def save(self, image: np.ndarray, event_id: str, *, heatmap: np.ndarray | None = None,
             roi: tuple[int, int, int, int] | None = None) -> str | None:
        """Write one snapshot; returns its file name, or None when disabled or the write failed.
        With a good-only detector's heat map, `<name>.heat.jpg` (the part with the map blended in) is
        written beside it, under the same quota."""
        if self.max_bytes <= 0:
            return None
        name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}_{int(time.time() * 1000) % 1000:03d}_{event_id}.jpg"
        if not self._write(name, image):
            return None
        if heatmap is not None:
            from smartstock.vision.anomaly import heatmap_overlay

            self._write(name.removesuffix(".jpg") + ".heat.jpg", heatmap_overlay(image, heatmap, roi))
        return name

    def _write(self, name: str, image: np.ndarray) -> bool:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            with self._lock:
                self.failed += 1
            return False
        tmp = self.folder / f".{name}.tmp"
        try:
            tmp.write_bytes(buf.tobytes())
            os.replace(tmp, self.folder / name)
        except OSError as e:
            with self._lock:
                self.failed += 1
                failed = self.failed
            if failed == 1 or failed % 100 == 0:
                logger.warning("snapshot %s not written (%d failures): %s", name, failed, e)
            return False
        with self._lock:
            self._files.append((name, len(buf)))
            self.bytes += len(buf)
            self._enforce()
        return True

    def path_of(self, name: str) -> Path | None:
        """The file for a snapshot name, or None for anything that is not a plain name in the folder."""
        return snapshot_file(self.folder, name)

    def _enforce(self) -> None:
        while self.bytes > self.max_bytes and self._files:
            name, size = self._files.popleft()
            try:
                (self.folder / name).unlink()
            except FileNotFoundError:
                pass
            self.bytes -= size
            self.deleted += 1
