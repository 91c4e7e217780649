"""Image-folder replay: files in name order, optional looping and a target FPS."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Literal

import cv2
from pydantic import BaseModel, ConfigDict, Field

from edge.capture.base import CorruptFrame, Frame, FrameSource, ReplayPacer, SourceError, SourceLost
from smartstock.config import SourceConfig
from smartstock.vision.images import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)



class FolderSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["folder"] = "folder"
    path: Path = Field(description="Folder of images, replayed in file-name order (subfolders included)")
    loop: bool = Field(False, description="Start again after the last image")
    fps: float = Field(0.0, ge=0.0, description="Replay rate; 0 = as fast as the consumer takes them")

    @classmethod
    def from_source(cls, cfg: SourceConfig) -> "FolderSourceConfig":
        return cls(path=Path(cfg.uri), loop=cfg.loop, fps=cfg.fps)

    def live(self) -> bool:
        return False


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` in a stable order (sorted relative paths)."""
    return sorted((p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                  key=lambda p: str(p.relative_to(folder)))


class FolderSource(FrameSource):
    kind = "folder"

    def __init__(self, cfg: FolderSourceConfig) -> None:
        self.cfg = cfg
        self.realtime = cfg.fps > 0
        if not cfg.path.is_dir():
            raise SourceLost(f"{cfg.path}: image folder not found",
                             hint="pass an existing folder of .png/.jpg files as --source")
        self._files = list_images(cfg.path)
        if not self._files:
            raise SourceLost(f"{cfg.path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder",
                             hint="put the images to replay into the folder")
        self._pos = 0
        self._index = 0
        self._ended = False
        self._closed = threading.Event()
        self._pacer = ReplayPacer(self.cfg.fps, self._closed)

    @property
    def ended(self) -> bool:
        return self._ended

    def describe(self) -> str:
        return f"folder {self.cfg.path} ({len(self._files)} images)"

    def read(self, timeout: float) -> Frame | None:
        if self._ended or self._closed.is_set():
            return None
        if not self._pacer.wait(timeout):
            return None
        if self._pos >= len(self._files):
            if not self.cfg.loop:
                self._ended = True
                logger.info("folder %s: replay finished after %d frames", self.cfg.path, self._index)
                return None
            self._files = list_images(self.cfg.path) if self.cfg.path.is_dir() else []
            self._pos = 0
            if not self._files:
                raise SourceLost(f"{self.cfg.path}: folder is gone or empty")
        path = self._files[self._pos]
        self._pos += 1
        if not path.exists():
            if not self.cfg.path.is_dir():
                raise SourceLost(f"{self.cfg.path}: folder is gone")
            raise CorruptFrame(f"{path}: file vanished")
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            raise CorruptFrame(f"{path}: not a readable image")
        self._index += 1
        return Frame(image=image, index=self._index, name=path.name)

    def close(self) -> None:
        self._closed.set()


def build(cfg: FolderSourceConfig) -> FolderSource:
    return FolderSource(cfg)


__all__ = ["FolderSource", "FolderSourceConfig", "SourceError", "list_images"]
