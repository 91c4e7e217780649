"""Sources read through cv2.VideoCapture: camera index / V4L2 device, GStreamer pipeline,
RTSP/HTTP stream and video file. One config class per kind with a `type` key (STYLE rule 1)."""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import Any, Literal

import cv2
from pydantic import BaseModel, ConfigDict, Field

from edge.capture.base import CorruptFrame, Frame, FrameSource, ReplayPacer, SourceError, SourceLost
from smartstock.config import SourceConfig
from smartstock.redact import redact

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mjpeg", ".mjpg", ".ts", ".h264", ".h265")


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = Field(0, ge=0, description="Requested width (0 = device default)")
    height: int = Field(0, ge=0, description="Requested height (0 = device default)")


class CameraSourceConfig(_Cfg):
    type: Literal["camera"] = "camera"
    device: int | str = Field(description="Camera index (0) or V4L2 device path (/dev/video0)")

    @classmethod
    def from_source(cls, cfg: SourceConfig) -> "CameraSourceConfig":
        return cls(device=cfg.uri.strip(), width=cfg.width, height=cfg.height)

    def live(self) -> bool:
        return True


class GStreamerSourceConfig(_Cfg):
    type: Literal["gstreamer"] = "gstreamer"
    pipeline: str = Field(description="GStreamer pipeline ending in `appsink` (e.g. nvarguscamerasrc ! ... ! appsink)")

    @classmethod
    def from_source(cls, cfg: SourceConfig) -> "GStreamerSourceConfig":
        return cls(pipeline=cfg.uri.strip(), width=cfg.width, height=cfg.height)

    def live(self) -> bool:
        return opencv_has_gstreamer()  # without GStreamer support the pipeline can never open: fail at start


class StreamSourceConfig(_Cfg):
    type: Literal["stream"] = "stream"
    url: str = Field(description="rtsp://, rtsps://, http:// or https:// URL")
    open_timeout_s: float = Field(10.0, gt=0, description="Give up connecting after this long")
    read_timeout_s: float = Field(5.0, gt=0, description="A read blocking longer than this fails")

    @classmethod
    def from_source(cls, cfg: SourceConfig) -> "StreamSourceConfig":
        return cls(url=cfg.uri.strip(), read_timeout_s=cfg.stall_timeout_s, width=cfg.width, height=cfg.height)

    def live(self) -> bool:
        return True


class VideoSourceConfig(_Cfg):
    type: Literal["video"] = "video"
    path: Path = Field(description="Video file to replay")
    loop: bool = Field(False, description="Start again at the end")
    fps: float = Field(0.0, ge=0.0, description="Replay rate; 0 = as fast as the consumer takes them")

    @classmethod
    def from_source(cls, cfg: SourceConfig) -> "VideoSourceConfig":
        return cls(path=Path(cfg.uri), loop=cfg.loop, fps=cfg.fps, width=cfg.width, height=cfg.height)

    def live(self) -> bool:
        return False


@functools.lru_cache(maxsize=1)
def opencv_has_gstreamer() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


class _CaptureSource(FrameSource):
    """Shared read path over an opened cv2.VideoCapture."""

    def __init__(self, cap: Any, what: str) -> None:
        self._cap = cap
        self._what = what
        self._index = 0
        self._lock = threading.Lock()
        if not cap.isOpened():
            cap.release()
            raise SourceLost(f"{what}: cannot open", hint=self._open_hint())

    def _open_hint(self) -> str:
        return "check the uri and that the device is connected"

    def describe(self) -> str:
        return f"{self.kind} {self._what}"

    def _grab(self) -> Frame | None:
        with self._lock:
            if self._cap is None:
                return None
            ok, image = self._cap.read()
        if not ok:
            return None
        if image is None or image.size == 0 or image.ndim not in (2, 3):
            raise CorruptFrame(f"{self._what}: empty or malformed frame")
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        self._index += 1
        return Frame(image=image, index=self._index)

    def read(self, timeout: float) -> Frame | None:
        frame = self._grab()
        if frame is None:
            raise SourceLost(f"{self._what}: read failed (device or stream gone)")
        return frame

    def close(self) -> None:
        with self._lock:
            if self._cap is not None:
                self._cap.release()
                self._cap = None


def _set_size(cap: Any, cfg: _Cfg) -> None:
    if cfg.width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
    if cfg.height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)


class CameraSource(_CaptureSource):
    kind = "camera"

    def __init__(self, cfg: CameraSourceConfig) -> None:
        device = int(cfg.device) if str(cfg.device).isdigit() else str(cfg.device)
        cap = cv2.VideoCapture(device, cv2.CAP_V4L2) if hasattr(cv2, "CAP_V4L2") else cv2.VideoCapture(device)
        super().__init__(cap, f"camera {device}")
        _set_size(cap, cfg)

    def _open_hint(self) -> str:
        return "check `v4l2-ctl --list-devices` and that the service user is in the `video` group"


class GStreamerSource(_CaptureSource):
    kind = "gstreamer"

    def __init__(self, cfg: GStreamerSourceConfig) -> None:
        if not opencv_has_gstreamer():
            raise SourceError("this OpenCV build has no GStreamer support, so a pipeline source cannot open",
                              hint="use the system OpenCV with GStreamer (JetPack's python3-opencv, see "
                                   "Dockerfile.jetson) instead of opencv-python-headless, or pass a camera index")
        super().__init__(cv2.VideoCapture(cfg.pipeline, cv2.CAP_GSTREAMER), "gstreamer pipeline")

    def _open_hint(self) -> str:
        return "test the pipeline with `gst-launch-1.0 ... ! fakesink`; it must end in appsink"


class StreamSource(_CaptureSource):
    kind = "stream"

    def __init__(self, cfg: StreamSourceConfig) -> None:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(cfg.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(cfg.read_timeout_s * 1000)]
        super().__init__(cv2.VideoCapture(cfg.url, cv2.CAP_FFMPEG, params), redact(cfg.url))

    def _open_hint(self) -> str:
        return "check the URL, credentials and that the camera is reachable (try it with ffplay)"


class VideoFileSource(_CaptureSource):
    kind = "video"

    def __init__(self, cfg: VideoSourceConfig) -> None:
        if not cfg.path.is_file():
            raise SourceLost(f"{cfg.path}: video file not found", hint="pass an existing video file as --source")
        self.cfg = cfg
        self.realtime = cfg.fps > 0
        self._ended = False
        self._closed = threading.Event()
        self._pacer = ReplayPacer(self.cfg.fps, self._closed)
        super().__init__(cv2.VideoCapture(str(cfg.path)), str(cfg.path))

    def _open_hint(self) -> str:
        return "the file is not a video OpenCV can decode (try converting it to .mp4 or .avi/MJPG)"

    @property
    def ended(self) -> bool:
        return self._ended

    def read(self, timeout: float) -> Frame | None:
        if self._ended or self._closed.is_set():
            return None
        if not self._pacer.wait(timeout):
            return None
        frame = self._grab()
        if frame is not None:
            frame.name = self.cfg.path.name
            return frame
        if not self.cfg.path.is_file():
            raise SourceLost(f"{self.cfg.path}: video file is gone")
        if not self.cfg.loop:
            self._ended = True
            logger.info("video %s: replay finished after %d frames", self.cfg.path, self._index)
            return None
        with self._lock:  # rewind: reopen, which also picks up a replaced file
            if self._cap is not None:
                self._cap.release()
            self._cap = cv2.VideoCapture(str(self.cfg.path))
            if not self._cap.isOpened():
                raise SourceLost(f"{self.cfg.path}: cannot reopen the video file")
        frame = self._grab()
        if frame is None:
            raise SourceLost(f"{self.cfg.path}: video file has no frames")
        return frame

    def close(self) -> None:
        self._closed.set()
        super().close()

