"""One contract over every frame-source kind that runs here (folder, video file, our fake), plus the
watchdog: reopen after loss, corrupt frames skipped and counted, status reported."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from edge.capture import WatchedSource, infer_kind, open_source
from edge.capture.base import FrameSource, SourceError
from edge.capture.folder import FolderSource, FolderSourceConfig
from edge.capture.opencv import GStreamerSource, GStreamerSourceConfig, VideoFileSource, VideoSourceConfig, opencv_has_gstreamer
from edge.samples import write_parts, write_video
from smartstock.config import SourceConfig
from smartstock.errors import ConfigError
from tests.edge_fakes import FakeFrameSource, flat_images

N = 12


def _folder(tmp_path: Path) -> FrameSource:
    write_parts(tmp_path / "parts", N, size=48)
    return FolderSource(FolderSourceConfig(path=tmp_path / "parts"))


def _video(tmp_path: Path) -> FrameSource:
    write_video(tmp_path / "parts.avi", N, size=48)
    return VideoFileSource(VideoSourceConfig(path=tmp_path / "parts.avi"))


def _fake(tmp_path: Path) -> FrameSource:
    return FakeFrameSource(flat_images(list(range(0, 240, 20)), size=48))


def _drain(src: FrameSource, limit: int = 1000) -> list:
    frames = []
    for _ in range(limit):
        f = src.read(timeout=1.0)
        if f is None:
            if src.ended:
                break
            continue
        frames.append(f)
    return frames


@pytest.mark.parametrize("make", [_folder, _video, _fake], ids=["folder", "video", "fake"])
def test_frame_source_contract(tmp_path, make):
    src = make(tmp_path)
    assert src.status == "ok"
    frames = _drain(src)
    assert len(frames) == N, "every frame delivered exactly once"
    assert src.ended
    for i, f in enumerate(frames):
        assert f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3
        assert f.image.shape[:2] == (48, 48)
        assert f.index == i + 1
    assert src.read(timeout=0.1) is None  # after the end: None, no exception
    src.close()
    src.close()  # idempotent


@pytest.mark.parametrize("kind", ["folder", "video"])
def test_looping_replay_restarts(tmp_path, kind):
    if kind == "folder":
        write_parts(tmp_path / "p", 3, size=32)
        uri = str(tmp_path / "p")
    else:
        uri = str(write_video(tmp_path / "v.avi", 3, size=32))
    src = open_source(SourceConfig(uri=uri, loop=True))
    got = [src.read(1.0) for _ in range(8)]
    assert all(f is not None for f in got) and not src.ended
    src.close()


def test_folder_paced_at_target_fps(tmp_path):
    write_parts(tmp_path / "p", 4, size=32)
    src = open_source(SourceConfig(uri=str(tmp_path / "p"), fps=50.0))
    assert src.realtime  # a paced replay behaves like a camera: the loop drops rather than waits
    assert len(_drain(src)) == 4
    src.close()


def test_infer_kind():
    assert infer_kind("0") == "camera"
    assert infer_kind("/dev/video2") == "camera"
    assert infer_kind("nvarguscamerasrc ! video/x-raw ! appsink") == "gstreamer"
    assert infer_kind("rtsp://user:pw@10.0.0.5/stream1") == "stream"
    assert infer_kind("https://cam.local/mjpg") == "stream"
    with pytest.raises(ConfigError, match="no such file or folder"):
        infer_kind("/nonexistent/file.mp4x")
    with pytest.raises(ConfigError, match="empty"):
        infer_kind("")


def test_missing_file_is_a_config_level_error_at_start(tmp_path):
    with pytest.raises(SourceError, match="video file not found"):
        open_source(SourceConfig(uri=str(tmp_path / "gone.mp4")))


def test_gstreamer_without_support_says_how_to_fix():
    if opencv_has_gstreamer():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(SourceError, match="no GStreamer support") as e:
        GStreamerSource(GStreamerSourceConfig(pipeline="videotestsrc ! appsink"))
    assert "Dockerfile.jetson" in str(e.value)


def test_camera_that_is_absent_retries_instead_of_crashing():
    src = open_source(SourceConfig(uri="/dev/video99", stall_timeout_s=0.2, backoff_max_s=0.2))
    assert src.status in ("reconnecting", "down")
    assert src.read(0.3) is None
    src.close()


def test_watchdog_skips_and_counts_corrupt_frames():
    src = WatchedSource(lambda: FakeFrameSource(flat_images([1, 2, 3, 4, 5]), corrupt_at={1, 3}), name="fake")
    frames = _drain(src)
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 3, 5]
    assert src.corrupt == 2 and src.status == "ok"


def test_watchdog_reopens_a_lost_source_with_backoff():
    made = []

    def factory():
        made.append(FakeFrameSource(flat_images([10, 20, 30]), lose_at=1 if not made else None))
        return made[-1]

    src = WatchedSource(factory, name="fake", backoff_min_s=0.05, backoff_max_s=0.1)
    assert src.read(1.0) is not None
    assert src.read(1.0) is None and src.status == "reconnecting"
    frames = _drain(src)
    assert len(made) == 2 and src.reopens == 1 and src.status == "ok"
    assert [int(f.image[0, 0, 0]) for f in frames] == [10, 20, 30]  # the new device starts afresh


def test_watchdog_reopens_a_source_whose_read_fails_unexpectedly():
    """An OpenCV or driver error while reading (not a SourceError) reopens the source like a lost one,
    instead of ending the camera's capture thread."""
    import cv2

    class Failing(FakeFrameSource):
        def read(self, timeout):
            if self.i == 1 and not made[1:]:
                self.i += 1
                raise cv2.error("V4L2: buffer dequeue failed")
            return super().read(timeout)

    made: list[FakeFrameSource] = []

    def factory():
        made.append(Failing(flat_images([10, 20, 30])))
        return made[-1]

    src = WatchedSource(factory, name="fake", backoff_min_s=0.05, backoff_max_s=0.1)
    assert src.read(1.0) is not None
    assert src.read(1.0) is None and src.status == "reconnecting" and "buffer dequeue" in src.last_error
    frames = _drain(src)
    assert len(made) == 2 and src.reopens == 1 and src.status == "ok" and len(frames) == 3


def test_folder_removed_and_restored_is_reopened(tmp_path):
    write_parts(tmp_path / "p", 3, size=32)
    src = open_source(SourceConfig(uri=str(tmp_path / "p"), loop=True, stall_timeout_s=0.5, backoff_max_s=0.2))
    assert src.read(1.0) is not None
    shutil.move(tmp_path / "p", tmp_path / "aside")
    statuses = set()
    for _ in range(20):
        src.read(0.1)
        statuses.add(src.status)
    assert statuses & {"reconnecting", "down"}
    assert "folder is gone" in src.last_error or "not found" in src.last_error
    shutil.move(tmp_path / "aside", tmp_path / "p")
    got = None
    for _ in range(50):
        got = src.read(0.1) or got
        if got is not None:
            break
    assert got is not None and src.status == "ok" and src.reopens >= 1
    src.close()


def test_close_interrupts_a_paced_read(tmp_path):
    write_parts(tmp_path / "p", 2, size=32)
    src = FolderSource(FolderSourceConfig(path=tmp_path / "p", fps=0.2))
    src.read(0.1)
    threading.Timer(0.1, src.close).start()
    assert src.read(5.0) is None


def test_video_file_removed_and_restored_is_reopened(tmp_path):
    video = write_video(tmp_path / "line.avi", 4, size=32)
    src = open_source(SourceConfig(uri=str(video), loop=True, stall_timeout_s=0.5, backoff_max_s=0.2))
    assert src.read(1.0) is not None
    video.rename(tmp_path / "aside.avi")
    statuses = set()
    for _ in range(30):  # the open file plays to its end, then the rewind finds it gone
        src.read(0.1)
        statuses.add(src.status)
    assert statuses & {"reconnecting", "down"} and ("gone" in src.last_error or "not found" in src.last_error)
    (tmp_path / "aside.avi").rename(video)
    got = None
    for _ in range(50):
        got = src.read(0.1)
        if got is not None:
            break
    assert got is not None and src.status == "ok" and src.reopens >= 1
    src.close()


def test_every_source_kind_in_the_config_has_a_plugin_and_back():
    """SourceConfig.kind (the library's config) and the edge registry name the same kinds."""
    import typing

    from edge.capture import SOURCES
    from smartstock.config import SourceConfig

    kinds = set(typing.get_args(SourceConfig.model_fields["kind"].annotation)) - {"auto"}
    assert kinds == set(SOURCES)
    for key, (config_cls, impl) in SOURCES.items():
        assert config_cls.model_fields["type"].default == key
        assert issubclass(impl, FrameSource)


def test_plugin_config_is_built_by_the_kind_from_the_source_section(tmp_path):
    from edge.capture import plugin_config
    from smartstock.config import SourceConfig

    folder = plugin_config(SourceConfig(uri=str(tmp_path), loop=True, fps=5.0))
    assert (folder.type, folder.path, folder.loop, folder.fps, folder.live()) == ("folder", tmp_path, True, 5.0, False)
    cam = plugin_config(SourceConfig(uri="/dev/video3", width=640))
    assert (cam.type, cam.device, cam.width, cam.live()) == ("camera", "/dev/video3", 640, True)
    stream = plugin_config(SourceConfig(uri="rtsp://cam.local/1", stall_timeout_s=7.0))
    assert (stream.type, stream.read_timeout_s, stream.live()) == ("stream", 7.0, True)
