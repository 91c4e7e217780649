"""Fleet rows from retained device messages, without a broker: payloads built by the product's own
Topics and message builders, then the hostile ones (bad topics, bad JSON, deep JSON, oversize,
wrong types, another device's id) counted and flagged without losing the rest of the row."""

from __future__ import annotations

import datetime as dt
import json

from smartstock.fleet import build_rows, topic_filters
from smartstock.fleet.rows import MAX_PAYLOAD_BYTES
from smartstock.store.db import iso_ts
from smartstock.sync.client import InboundMessage
from smartstock.sync.payloads import dumps, message
from smartstock.sync.topics import Topics

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


def ago(minutes: float) -> str:
    return iso_ts((NOW - dt.timedelta(minutes=minutes)).timestamp())


def device(device_id: str, *, site: str = "plant", line: str = "line1", minutes: float = 0.5, online: bool = True,
           cameras: dict[str, str] | None = None, cameras_as_dict: bool = False) -> list[InboundMessage]:
    """What a healthy device leaves retained on the broker (`cameras_as_dict`: as devices published
    `cameras` before it became one object per camera)."""
    t = Topics("smartstock", site, line, device_id)
    cams = cameras or {"cam1": "ok"}
    listed = [{"id": k, "sku": "PCB", "status": v, "ended": False, "fps": 6.0, "seconds_since_frame": 0.1, "parts": 600,
               "defects": 7, "defect_rate": 0.0117, "dropped": 0, "capture_errors": 0, "last_error": ""}
              for k, v in cams.items()]
    state = message(device_id, ts=ago(minutes), model_id="pcb-defect", model_release=3, provider="CPUExecutionProvider",
                    camera="down" if "down" in cams.values() else "ok", cameras=cams if cameras_as_dict else listed,
                    fps=12.5, latency_ms_p50=4.1,
                    latency_ms_p99=9.0, parts=1200, dropped=0, defect_rate=0.0125, backlog=7, rss_mb=180.2)
    model = message(device_id, ts=ago(minutes + 60), kind="defect-classifier", step_kind="defect-classifier",
                    title="SmartStock defect model", installed_version="3", latest_version="3", in_progress=False,
                    release_summary="", update_percentage=None, status="committed", progress=None, error=None,
                    detail="", serving="3", models={"defect-classifier": {"installed_version": "3"}})
    alerts = message(device_id, ts=ago(minutes), alerts=[
        {"key": "defect_rate:PCB", "kind": "defect_rate", "sku": "PCB", "severity": "warning",
         "message": "defect rate 12% over 5%", "data": {"rate": 0.12}, "opened_at": ago(30), "updated_at": ago(1)}])
    sync = message(device_id, ts=ago(minutes), published=50, acked=50, backlog=3, backlog_bytes=900, oldest_s=1.5,
                   in_flight=0, connected=1, connects=1, dropped=0, commands_ok=2)
    return [InboundMessage(t.status, b"online" if online else b"offline", True),
            InboundMessage(t.state, dumps(state), True), InboundMessage(t.model_state, dumps(model), True),
            InboundMessage(t.alerts, dumps(alerts), True), InboundMessage(t.sync_stats, dumps(sync), True)]


def test_cameras_as_published_now_and_as_before_give_the_same_row():
    now, before = (build_rows(device("cam-x", cameras={"left": "ok", "right": "down"}, cameras_as_dict=d), now=NOW).rows[0]
                   for d in (False, True))
    assert now.cameras == before.cameras == {"left": "ok", "right": "down"}
    assert now.unknown_fields == before.unknown_fields == [] and now.problems == []
    t = Topics("smartstock", "plant", "line1", "cam-y")
    bad = message("cam-y", ts=ago(1), camera="ok", cameras=[{"id": "a", "status": "ok"}, {"id": 3}, "x"])
    (row,) = build_rows([InboundMessage(t.status, b"online", True), InboundMessage(t.state, dumps(bad), True)],
                        now=NOW).rows
    assert row.cameras == {"a": "ok"} and row.problems == ["state.cameras: wrong type or out of range"]


def test_healthy_stale_and_offline_devices_get_one_row_each():
    msgs = device("cam-a") + device("cam-b", line="line2", minutes=25) + device("cam-c", online=False, minutes=90)
    msgs += device("cam-d", cameras={"left": "ok", "right": "down"})
    view = build_rows(msgs, now=NOW, stale_minutes=10)
    rows = {r.device_id: r for r in view.rows}
    assert [r.device_id for r in view.rows] == ["cam-a", "cam-c", "cam-d", "cam-b"]  # by site, line, id
    a = rows["cam-a"]
    assert (a.site, a.line, a.health, a.online, a.stale) == ("plant", "line1", "online", True, False)
    assert (a.model_id, a.model_release, a.ota_status, a.ota_installed) == ("pcb-defect", "3", "committed", "3")
    assert (a.camera, a.fps, a.defect_rate, a.open_alerts, a.backlog) == ("ok", 12.5, 0.0125, 1, 3)  # sync's backlog
    assert a.alerts[0]["kind"] == "defect_rate" and a.alerts[0]["message"].startswith("defect rate")
    assert a.last_seen == ago(0.5) and a.state_age_s == 30.0
    assert a.problems == [] and a.unknown_fields == []
    assert rows["cam-b"].health == "stale" and rows["cam-b"].stale
    assert rows["cam-c"].health == "offline" and not rows["cam-c"].stale  # offline is not stale
    assert rows["cam-d"].camera == "down" and rows["cam-d"].cameras == {"left": "ok", "right": "down"}
    assert view.summary() == {"devices": 4, "online": 2, "offline": 1, "stale": 1, "unknown": 0, "with_alerts": 4,
                              "with_problems": 0}
    assert set(view.counters.values()) - {0} == {len(msgs)}  # nothing but `messages` counted
    json.dumps(view.to_json())  # JSON-ready as it is


def test_online_without_any_state_is_stale_and_a_state_without_status_is_unknown():
    t = Topics("smartstock", "plant", "line1", "fresh")
    only_state = [m for m in device("nostatus") if m.topic.endswith("/state")]
    view = build_rows([InboundMessage(t.status, b"online", True), *only_state], now=NOW)
    rows = {r.device_id: r for r in view.rows}
    assert rows["fresh"].health == "stale" and rows["fresh"].state_ts is None
    assert rows["nostatus"].health == "unknown" and rows["nostatus"].online is None and rows["nostatus"].fps == 12.5


def test_a_later_message_replaces_an_earlier_one_and_an_empty_one_deletes_it():
    t = Topics("smartstock", "plant", "line1", "cam-a")
    msgs = device("cam-a") + [InboundMessage(t.status, b"offline", False), InboundMessage(t.alerts, b"", True)]
    row = build_rows(msgs, now=NOW).rows[0]
    assert row.health == "offline" and row.open_alerts is None and row.alerts == []


def test_prefix_site_and_line_filters():
    assert topic_filters("acme/smartstock/", "plant-2") == [
        f"acme/smartstock/plant-2/+/+/{s}" for s in ("status", "state", "model/state", "alerts", "sync")]
    msgs = [InboundMessage(m.topic.replace("smartstock/", "acme/smartstock/", 1), m.payload, True) for m in device("x")]
    assert [r.device_id for r in build_rows(msgs, prefix="acme/smartstock", now=NOW).rows] == ["x"]
    assert build_rows(msgs, prefix="smartstock", now=NOW).counters["bad_topic"] == 5


def test_hostile_payloads_are_counted_and_flagged_never_fatal():
    t = Topics("smartstock", "plant", "line1", "evil")
    deep = b'{"v":1,"device_id":"evil","alerts":' + b"[" * 5000 + b"]" * 5000 + b"}"
    state = message("evil", ts=ago(1), fps="fast", defect_rate=7.5, camera=["ok"], cameras={"c1": 3}, backlog=-1,
                    model_release=2, shiny_new_field=1)
    msgs = [
        InboundMessage(t.status, b"maybe", True),                                              # neither word
        InboundMessage(t.state, dumps(state), True),                                           # wrong types
        InboundMessage(t.alerts, deep, True),                                                  # nesting bomb
        InboundMessage(t.model_state, b'{"v":1,"device_id":"evil",', True),                    # cut JSON
        InboundMessage(t.sync_stats, dumps(message("someone-else", backlog=1)), True),         # another id
        InboundMessage("smartstock/plant/line1/evil/state/extra", b"{}", True),                 # not a device topic
        InboundMessage("smartstock/plant/line 1/evil/state", b"{}", True),                     # bad level
        InboundMessage("smartstock/plant/line1/" + "x" * 65 + "/state", b"{}", True),          # too long a level
        InboundMessage(Topics("smartstock", "plant", "line1", "big").state, b"{" + b" " * MAX_PAYLOAD_BYTES, True),
        InboundMessage(Topics("smartstock", "plant", "line1", "arr").state, b"[1, 2]", True),
        InboundMessage(Topics("smartstock", "plant", "line1", "bin").state, b"\xff\xfe\x00", True),
        InboundMessage(Topics("smartstock", "plant", "line1", "nan").state,
                       b'{"v":1,"device_id":"nan","ts":"yesterday","fps":NaN}', True),
    ]
    view = build_rows(msgs, now=NOW)
    rows = {r.device_id: r for r in view.rows}
    c = view.counters
    assert c["bad_topic"] == 3 and c["oversize"] == 1 and c["too_deep"] == 1 and c["device_mismatch"] == 1
    assert c["bad_json"] == 3  # cut JSON, not UTF-8, a list
    evil = rows["evil"]
    assert evil.online is None and evil.health == "unknown"
    assert evil.fps is None and evil.defect_rate is None and evil.camera is None and evil.backlog is None
    assert evil.model_release == "2" and evil.cameras == {}
    assert evil.unknown_fields == ["state.shiny_new_field"]
    text = " | ".join(evil.problems)
    for what in ("neither online nor offline", "state.fps", "state.defect_rate", "alerts: too deep",
                 "model/state: not valid JSON", "device_id 'someone-else'"):
        assert what in text, (what, text)
    assert "over 256 KiB" in rows["big"].problems[0]
    assert "not an object" in rows["arr"].problems[0] and "not valid JSON" in rows["bin"].problems[0]
    assert rows["nan"].fps is None and " | ".join(rows["nan"].problems) == \
        "state.ts: not an ISO time | state.fps: wrong type or out of range"


def test_the_watch_keeps_a_bounded_total_of_payload_bytes(monkeypatch):
    """Many maximal payloads (an open broker) stop being kept past MAX_TOTAL_BYTES and are counted;
    replacing a topic's message frees its old bytes."""
    import smartstock.fleet.watch as watch
    from smartstock.config import MqttConfig

    class Idle:  # the watch's client is not used before start(): messages are handed in directly below
        last_error = None

        def subscribe(self, topic_filter, handler, qos=1):
            pass

    monkeypatch.setattr(watch, "MAX_TOTAL_BYTES", 3100)
    w = watch.FleetWatch(MqttConfig(), client_factory=lambda cfg, password, cid: Idle())
    big = b"x" * 1000
    for i in range(5):
        w._on_message(InboundMessage(f"smartstock/p/l/cam-{i}/state", big, True))
    assert len(w._latest) == 3 and w._extra == 2 and w._bytes == 3000
    w._on_message(InboundMessage("smartstock/p/l/cam-0/state", b"{}", True))  # a replacement shrinks it
    w._on_message(InboundMessage("smartstock/p/l/cam-3/state", big, True))
    assert len(w._latest) == 4 and w._bytes == 2002 + 1000 and w._extra == 2


def test_the_plant_page_builds_the_rows_at_most_once_a_second_for_all_its_clients(monkeypatch):
    import smartstock.fleet.server as server
    import smartstock.fleet.watch as watch
    from smartstock.config import MqttConfig

    class Idle:
        last_error, connected = None, True

        def subscribe(self, topic_filter, handler, qos=1):
            pass

    w = watch.FleetWatch(MqttConfig(), client_factory=lambda cfg, password, cid: Idle())
    builds = []
    real = w.view
    monkeypatch.setattr(w, "view", lambda stale: builds.append(stale) or real(stale))
    views = server._Views(w, 10.0)
    first = views.json()
    assert views.json() is first and builds == [10.0]  # a second client within the second: the same build
    t = Topics("smartstock", "p", "l", "cam-1")
    w._on_message(InboundMessage(t.status, b"online", True))
    monkeypatch.setattr(server, "VIEW_MAX_AGE_S", 0.0)
    again = views.json()
    assert len(builds) == 2 and [r["device_id"] for r in again["devices"]] == ["cam-1"]
