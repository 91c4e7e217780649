"""Frame sources behind one FrameSource interface, each wrapped in a reconnecting watchdog.

`open_source(SourceConfig)` infers the kind from the uri (camera index or /dev/video*, a GStreamer
pipeline containing `!`, rtsp/http URL, video file, image folder) unless `kind` names it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from edge.capture.base import CorruptFrame, Frame, FrameSource, SourceError, SourceLost, SourceStatus
from edge.capture.folder import FolderSource, FolderSourceConfig
from edge.capture.opencv import (VIDEO_SUFFIXES, CameraSource, CameraSourceConfig, GStreamerSource,
                                 GStreamerSourceConfig, StreamSource, StreamSourceConfig, VideoFileSource,
                                 VideoSourceConfig)
from edge.capture.watchdog import WatchedSource
from smartstock.config import SourceConfig
from smartstock.errors import ConfigError
from smartstock.redact import redact


class SourcePluginConfig(Protocol):
    """What every source kind's config class offers (each is a pydantic model with a `type` key)."""

    type: str

    @classmethod
    def from_source(cls, cfg: SourceConfig) -> "SourcePluginConfig": ...

    def live(self) -> bool:
        """A device or stream that may appear later (retried in the background) rather than a file."""
        ...


# type key -> (config class, implementation); a new kind is one entry here (and in SourceConfig.kind).
SOURCES: dict[str, tuple[type[SourcePluginConfig], type[FrameSource]]] = {
    "camera": (CameraSourceConfig, CameraSource),
    "gstreamer": (GStreamerSourceConfig, GStreamerSource),
    "stream": (StreamSourceConfig, StreamSource),
    "video": (VideoSourceConfig, VideoFileSource),
    "folder": (FolderSourceConfig, FolderSource),
}

_STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


def infer_kind(uri: str) -> str:
    """The source kind a uri means; ConfigError naming the fix when it cannot tell."""
    u = uri.strip()
    if not u:
        raise ConfigError("source.uri is empty: nothing to capture from",
                          hint="set source.uri or pass --source (0, /dev/video0, rtsp://..., file.mp4 or a folder)")
    if u.isdigit() or re.fullmatch(r"/dev/video\d+", u) or u.startswith("/dev/v4l/"):
        return "camera"
    if "!" in u:
        return "gstreamer"
    if u.lower().startswith(_STREAM_SCHEMES):
        return "stream"
    p = Path(u)
    if p.is_dir():
        return "folder"
    if p.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    if p.exists():
        raise ConfigError(f"source.uri {redact(u)!r}: not a folder and not a known video type ({', '.join(VIDEO_SUFFIXES)})",
                          hint="set source.kind = \"video\" if OpenCV can read it anyway")
    raise ConfigError(f"source.uri {redact(u)!r}: no such file or folder",
                      hint="pass an existing image folder or video file, a camera index, a device or a URL")


def plugin_config(cfg: SourceConfig) -> SourcePluginConfig:
    """The kind's own config built from the generic [source] section."""
    kind = infer_kind(cfg.uri) if cfg.kind == "auto" else cfg.kind
    return SOURCES[kind][0].from_source(cfg)


def open_source(cfg: SourceConfig) -> WatchedSource:
    """Open the configured source under a watchdog. A file or folder that is missing at start is a
    ConfigError; a camera or stream that is not there yet is retried in the background."""
    pcfg = plugin_config(cfg)
    impl = SOURCES[pcfg.type][1]

    def factory() -> FrameSource:
        return impl(pcfg)  # type: ignore[call-arg]

    return WatchedSource(factory, name=f"source {redact(cfg.uri.strip())}", kind=pcfg.type, stall_timeout_s=cfg.stall_timeout_s,
                         backoff_max_s=cfg.backoff_max_s, retry_first_open=pcfg.live())


__all__ = ["CorruptFrame", "Frame", "FrameSource", "SOURCES", "SourceError", "SourceLost", "SourceStatus",
           "WatchedSource", "infer_kind", "open_source", "plugin_config"]
