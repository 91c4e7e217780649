"""Several cameras on one device ([[sources]]): config validation, one capture thread per camera
feeding one queue (parts of both cameras in one model call, each booked under its camera's SKU),
and one camera ending or vanishing while the other keeps booking (real folders, real SQLite, HTTP)."""

from __future__ import annotations

import argparse
import json
import shutil
import urllib.request

import numpy as np
import pytest

from edge.app import App
from edge.commands.run_cmd import apply_overrides
from edge.loop import Camera, InspectionLoop, LoopSettings
from edge.samples import write_parts, write_video
from smartstock.config import Config, load_config
from smartstock.errors import ConfigError
from smartstock.store.stock import levels
from tests.conftest import wait_for
from tests.edge_fakes import FakeClassifier, FakeFrameSource, flat_images
from tests.fixtures.broker import Probe


def _toml(tmp_path, text: str):
    p = tmp_path / "smartstock.toml"
    p.write_text(text)
    return p


def test_sources_are_parsed_and_the_one_camera_shortcut_is_cam1(tmp_path):
    cfg = load_config(_toml(tmp_path, """
[[sources]]
id = "left"
uri = "/dev/video0"
sku = "PART-L"
trigger = "nth"
every_n = 3
roi = [0, 0, 10, 10]
snapshot_max_mb = 5

[[sources]]
id = "right_2"
uri = "rtsp://cam/right"
sku = "PART-R"
"""))
    cams = cfg.cameras()
    assert [(c.id, c.sku, c.trigger, c.every_n, c.roi) for c in cams] == [
        ("left", "PART-L", "nth", 3, (0, 0, 10, 10)), ("right_2", "PART-R", "every", 1, None)]
    assert cams[0].snapshot_max_mb == 5 and cams[1].snapshot_max_mb is None
    assert cfg.camera_skus() == ["PART-L", "PART-R"]
    one = Config()
    one.source.uri, one.inspection.sku, one.inspection.trigger = "/dev/video1", "X-1", "motion"
    (cam,) = one.cameras()
    assert (cam.id, cam.uri, cam.sku, cam.trigger) == ("cam1", "/dev/video1", "X-1", "motion")


def test_run_source_is_the_one_camera_shortcut_even_with_sources_in_the_file(tmp_path):
    cfg = load_config(_toml(tmp_path, '[[sources]]\nid = "a"\nuri = "0"\nsku = "S1"\n'
                                      '[[sources]]\nid = "b"\nuri = "1"\nsku = "S2"\n'))
    base = dict(source=None, loop=None, fps=None, model=None, sku=None, device_id=None, http_host=None,
                http_port=None, mqtt=None, max_frames=None)
    assert [c.id for c in apply_overrides(cfg, argparse.Namespace(**base)).cameras()] == ["a", "b"]
    one = apply_overrides(cfg, argparse.Namespace(**{**base, "source": "/dev/video2", "sku": "S9"}))
    assert [(c.id, c.uri, c.sku) for c in one.cameras()] == [("cam1", "/dev/video2", "S9")]


def test_loop_and_fps_on_the_command_line_are_the_default_of_each_source(tmp_path):
    cfg = load_config(_toml(tmp_path, '[[sources]]\nid = "a"\nuri = "0"\nsku = "S1"\nfps = 5\n'
                                      '[[sources]]\nid = "b"\nuri = "1"\nsku = "S2"\nloop = false\n'
                                      '[[sources]]\nid = "c"\nuri = "2"\nsku = "S3"\n'))
    base = dict(source=None, loop=None, fps=None, model=None, sku=None, device_id=None, http_host=None,
                http_port=None, mqtt=None, max_frames=None)
    got = apply_overrides(cfg, argparse.Namespace(**{**base, "loop": True, "fps": 20.0})).cameras()
    assert [(c.id, c.loop, c.fps) for c in got] == [("a", True, 5.0), ("b", False, 20.0), ("c", True, 20.0)]
    assert [(c.loop, c.fps) for c in apply_overrides(cfg, argparse.Namespace(**base)).cameras()] == [
        (False, 5.0), (False, 0.0), (False, 0.0)]  # no option: the file as it is
    with pytest.raises(ConfigError, match="fps"):
        apply_overrides(cfg, argparse.Namespace(**{**base, "fps": -1.0}))


@pytest.mark.parametrize("body, expect", [
    ('[[sources]]\nid = "a"\nuri = "0"\nsku = "S1"\n[[sources]]\nid = "a"\nuri = "1"\nsku = "S2"\n', "used twice"),
    ('[[sources]]\nid = "line/1"\nuri = "0"\nsku = "S1"\n', "sources.0.id"),
    ('[[sources]]\nid = "a b"\nuri = "0"\nsku = "S1"\n', "sources.0.id"),
    ('[[sources]]\nid = "a"\nuri = "0"\n', "sources.0.sku"),
    ('[[sources]]\nid = "a"\nuri = "0"\nsku = "bad/sku"\n', "sources.0.sku"),
    ('[source]\nuri = "0"\n[[sources]]\nid = "a"\nuri = "1"\nsku = "S1"\n', "both [source] and [[sources]]"),
])
def test_bad_sources_name_the_field_and_the_fix(tmp_path, body, expect):
    with pytest.raises(ConfigError) as e:
        load_config(_toml(tmp_path, body))
    assert expect in " ".join(e.value.problems)


def test_one_model_call_serves_both_cameras_and_each_books_its_own_sku(store):
    # two live cameras delivering at once, inference a little slower: the queue holds parts of both
    clf = FakeClassifier(delay_s=0.002)
    seen: list[set[int]] = []
    inner = clf.classify_batch
    clf.classify_batch = lambda frames: (seen.append({int(f.mean()) for f in frames}), inner(frames))[1]  # type: ignore[method-assign]
    cams = [Camera("a", FakeFrameSource(flat_images([10] * 60), fps=300), "SKU-A"),
            Camera("b", FakeFrameSource(flat_images([200] * 40), fps=300), "SKU-B")]  # bright: b's parts are defects
    loop = InspectionLoop(None, clf, store, LoopSettings(sku="unused", device_id="dev1", events_topic="t",
                                                         queue_size=512, batch_max=8), cameras=cams)
    loop.start()
    assert loop.done.wait(30)
    loop.stop()
    lv = levels(store.conn)
    assert (lv["SKU-A"]["produced"], lv["SKU-A"]["scrapped"]) == (60, 0)
    assert (lv["SKU-B"]["produced"], lv["SKU-B"]["scrapped"]) == (0, 40)
    assert any(s == {10, 200} for s in seen), f"no model call batched parts of both cameras: {seen}"
    events = [json.loads(r[0]) for r in store.query("SELECT payload FROM outbox")]
    assert {(e["source"], e["sku"]) for e in events} == {("a", "SKU-A"), ("b", "SKU-B")}
    assert cams[0].counters["parts_inspected"] == 60 and cams[1].counters["defects"] == 40


def test_a_camera_roi_is_all_the_shared_model_sees(store):
    frame = np.full((32, 32, 3), 10, np.uint8)
    frame[:8, :8] = 255  # a bright corner: the whole frame is dark on average, the corner alone is bright
    cams = [Camera("whole", FakeFrameSource([frame] * 5), "SKU-W"),
            Camera("corner", FakeFrameSource([frame] * 5), "SKU-C", roi=(0, 0, 8, 8))]
    loop = InspectionLoop(None, FakeClassifier(), store, LoopSettings(sku="unused", device_id="d", events_topic="t"),
                          cameras=cams)
    loop.start()
    assert loop.done.wait(30)
    loop.stop()
    lv = levels(store.conn)
    assert (lv["SKU-W"]["produced"], lv["SKU-C"]["scrapped"]) == (5, 5)


def _booked(app: App, sku: str) -> int:
    return app.store.query_one("SELECT COUNT(*) FROM inspections WHERE sku = ?", (sku,))[0]


def _camera_a(tmp_path, how: str) -> str:
    """Camera a's [[sources]] entry: a folder or a video file that will end, vanish or change resolution."""
    if how == "video vanishes":
        write_video(tmp_path / "a.avi", 6, size=32)
        return f'uri = "{tmp_path / "a.avi"}"\nloop = true'
    write_parts(tmp_path / "a", 6, size=48)
    return (f'uri = "{tmp_path / "a"}"\nloop = {"false" if how == "ends" else "true"}'
            + ("\nroi = [36, 36, 10, 10]" if how == "resolution drops" else ""))


def _break(tmp_path, how: str) -> None:
    if how == "vanishes":
        shutil.rmtree(tmp_path / "a")
    elif how == "video vanishes":
        (tmp_path / "a.avi").unlink()
    elif how == "resolution drops":  # the camera now sends 32x32 frames: its ROI at (36, 36) is outside them
        for p in write_parts(tmp_path / "small", 6, size=32):
            p.replace(tmp_path / "a" / p.name)


@pytest.mark.parametrize("how", ["ends", "vanishes", "video vanishes", "resolution drops"])
def test_one_camera_going_away_never_stalls_the_other(tmp_path, how):
    write_parts(tmp_path / "b", 6, size=32)
    cfg = load_config(_toml(tmp_path, f"""
[http]
port = 0
[ota]
enabled = false
[alerts]
camera_down_after_s = 0.5
[[sources]]
id = "a"
{_camera_a(tmp_path, how)}
sku = "SKU-A"
fps = 50
stall_timeout_s = 0.5
backoff_max_s = 1
[[sources]]
id = "b"
uri = "{tmp_path / 'b'}"
sku = "SKU-B"
fps = 50
loop = true
"""))
    app = App(cfg, tmp_path / "state", classifier=FakeClassifier())
    app.start()
    try:
        assert wait_for(lambda: _booked(app, "SKU-A") >= 6, 60), app.cameras_status()
        broken = how != "ends"
        _break(tmp_path, how)
        if broken:
            assert wait_for(lambda: app.cameras_status()[0]["status"] != "ok", 60), app.cameras_status()
            ok, reason = app.health()
            assert not ok and reason.startswith("camera a "), reason
        else:
            assert wait_for(lambda: app.sources["a"].ended, 60), app.cameras_status()
        a_then, b_then = _booked(app, "SKU-A"), _booked(app, "SKU-B")
        assert wait_for(lambda: _booked(app, "SKU-B") >= b_then + 20, 60), f"camera b stalled: {app.cameras_status()}"
        assert app.loop.alive() and app.alive() == (True, "alive")
        if how == "resolution drops":  # a's frames still arrive; none of them is booked, each is counted
            assert _booked(app, "SKU-A") - a_then <= app.config.inspection.queue_size
            assert app.loop.cameras[0].counters["capture_errors"] > 0
            assert "does not fit" in app.cameras_status()[0]["last_error"]
        # the camera_down alert is camera a's own; b, still delivering, has none
        if broken:
            assert wait_for(lambda: [a["key"] for a in app.refresher.check_alerts()
                                     if a["kind"] == "camera_down"] == ["camera_down:a"], 30), app.cameras_status()
        else:
            assert not [a for a in app.refresher.check_alerts() if a["kind"] == "camera_down"]
        state = app.state_summary()  # the retained MQTT state: the worst camera, and each one
        by_id = {c["id"]: c for c in state["cameras"]}
        assert by_id["b"]["status"] == "ok" and state["camera"] == by_id["a"]["status"]
        assert by_id["b"]["parts"] >= b_then + 20 and by_id["b"]["sku"] == "SKU-B" and by_id["b"]["fps"] > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{app.http.port}/api/status", timeout=5) as r:
            status = json.load(r)
        cams = {c["id"]: c for c in status["cameras"]}
        assert cams["b"]["status"] == "ok" and cams["b"]["sku"] == "SKU-B"
        assert cams["b"]["counters"]["parts_inspected"] >= b_then + 20
        assert cams["a"]["ended"] == (how == "ends") and status["camera"]["source"] == cams["a"]["source"]
        with urllib.request.urlopen(f"http://127.0.0.1:{app.http.port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'smartstock_camera_up{device_id="line1-cam1",camera="b",sku="SKU-B"} 1' in metrics
        assert ('smartstock_camera_up{device_id="line1-cam1",camera="a",sku="SKU-A"} '
                + ("0" if broken else "1")) in metrics
        if how == "resolution drops":
            assert 'smartstock_camera_capture_errors_total{device_id="line1-cam1",camera="b",sku="SKU-B"} 0' in metrics
    finally:
        app.stop()


def test_drops_are_counted_against_the_camera_whose_part_was_lost(store):
    # two live cameras, inference far behind: the queue drops the oldest part, whoever's it was
    cams = [Camera("a", FakeFrameSource(flat_images([10] * 150), fps=400), "SKU-A"),
            Camera("b", FakeFrameSource(flat_images([200] * 150), fps=400), "SKU-B")]
    loop = InspectionLoop(None, FakeClassifier(delay_s=0.01), store, LoopSettings(
        sku="unused", device_id="dev1", events_topic="t", queue_size=4, batch_max=1), cameras=cams)
    loop.start()
    assert loop.done.wait(60)
    loop.stop()
    total = loop.metrics.snapshot()
    assert total["frames_dropped"] > 0 and total["frames_dropped"] == sum(c.counters["frames_dropped"] for c in cams)
    for c in cams:  # every part of a camera is either booked or counted as dropped, against that camera
        k = c.counters
        assert k["parts_triggered"] == 150 and k["parts_inspected"] + k["frames_dropped"] == 150, (c.id, k)
        assert store.query_one("SELECT COUNT(*) FROM inspections WHERE sku = ?", (c.sku,))[0] == k["parts_inspected"]


def test_each_camera_on_mqtt_state_events_alerts_and_discovery(tmp_path, broker):
    """Real mosquitto: each camera's retained state topic, events naming their camera, camera a's own
    camera_down alert once its folder vanishes, and Home Assistant entities per camera."""
    write_parts(tmp_path / "a", 6, size=32)
    write_parts(tmp_path / "b", 6, size=32)
    cfg = load_config(_toml(tmp_path, f"""
[device]
device_id = "multi"
[http]
enabled = false
[ota]
enabled = false
[alerts]
camera_down_after_s = 0.5
[mqtt]
enabled = true
host = "127.0.0.1"
port = {broker.port}
[[sources]]
id = "a"
uri = "{tmp_path / 'a'}"
sku = "SKU-A"
fps = 40
loop = true
stall_timeout_s = 0.3
backoff_max_s = 1
[[sources]]
id = "b"
uri = "{tmp_path / 'b'}"
sku = "SKU-B"
fps = 40
loop = true
"""))
    base = "smartstock/plant/line1/multi"
    probe = Probe(broker.port, ["smartstock/#", "homeassistant/#"])
    app = App(cfg, tmp_path / "state", classifier=FakeClassifier())
    app.start()
    try:
        assert wait_for(lambda: _booked(app, "SKU-A") >= 6 and _booked(app, "SKU-B") >= 6, 60)
        shutil.rmtree(tmp_path / "a")
        assert wait_for(lambda: app.sources["a"].status != "ok", 30), app.cameras_status()
        assert wait_for(lambda: [a["key"] for a in app.refresher.check_alerts()] == ["camera_down:a"], 30)
        app.refresher.publish_state()

        def last(topic):
            return json.loads(probe.wait_for(lambda m: m.topic == topic, timeout=30)[-1].payload)

        assert wait_for(lambda: any(json.loads(m.payload).get("status") != "ok"
                                    for m in probe.on(f"{base}/camera/a/state")), 30)
        a, b = last(f"{base}/camera/a/state"), last(f"{base}/camera/b/state")
        assert (a["id"], a["sku"], b["id"], b["sku"], b["status"]) == ("a", "SKU-A", "b", "SKU-B", "ok")
        assert a["status"] in ("reconnecting", "down") and b["parts"] >= 6 and b["fps"] > 0
        assert {"fps", "seconds_since_frame", "parts", "defect_rate"} <= set(b)
        alerts = last(f"{base}/alerts")["alerts"]
        assert [(x["key"], x["data"]["camera"]) for x in alerts] == [("camera_down:a", "a")]
        events = [json.loads(m.payload) for m in probe.wait_for(lambda m: m.topic == f"{base}/events/inspection",
                                                                count=12, timeout=30)]
        assert {(e["source"], e["sku"]) for e in events} == {("a", "SKU-A"), ("b", "SKU-B")}
        node = "smartstock_multi"
        for cam in ("a", "b"):
            cfg_msg = json.loads(probe.wait_for(
                lambda m, cam=cam: m.topic == f"homeassistant/binary_sensor/{node}/camera_{cam}_status/config")[0].payload)
            assert cfg_msg["state_topic"] == f"{base}/camera/{cam}/state"
    finally:
        app.stop()
        probe.close()
