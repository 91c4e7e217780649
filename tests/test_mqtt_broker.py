"""The sync service against a real mosquitto: events, retained state, availability, discovery,
inbound sales and commands. TLS and passwords are in test_mqtt_security.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from edge.sync_worker import SyncService
from smartstock.config import Config
from smartstock.sync import outbox
from smartstock.sync.discovery import node_id, object_id
from smartstock.sync.inbound import parse_set_threshold
from smartstock.sync.payloads import event, message
from tests.fixtures.broker import Probe

BASE = "smartstock/plant/line1/dev1"


def make_service(store, port: int, **mqtt) -> SyncService:
    cfg = Config.model_validate({"device": {"device_id": "dev1"},
                                 "mqtt": {"enabled": True, "host": "127.0.0.1", "port": port, "reconnect_min_s": 0.1,
                                          "reconnect_max_s": 0.5, **mqtt}})
    return SyncService(cfg.mqtt, cfg.device, store, skus_provider=lambda: ["PCB-100", "PCB-200"])


@pytest.fixture
def service(store, broker):
    svc = make_service(store, broker.port)
    svc.start()
    assert svc.client.wait_subscribed(10)
    yield svc
    svc.stop()


def payload(msg) -> dict:
    return json.loads(msg.payload)


def test_events_and_retained_state_reach_dashboards(store, broker):
    probe = Probe(broker.port, f"{BASE}/#")
    with store.transaction() as conn:  # written while offline: the service is not started yet
        for i in range(3):
            outbox.enqueue(conn, f"{BASE}/events/inspection", event("dev1", event_id=f"ev-{i}", label="ok"))
        for fps in (10.0, 12.5):  # coalesced: only the newest state is kept
            outbox.enqueue(conn, f"{BASE}/state", message("dev1", fps=fps), retain=True,
                           priority=outbox.PRIORITY_STATE)
    assert outbox.backlog(store.conn)["rows"] == 4
    svc = make_service(store, broker.port)
    svc.start()
    try:
        events = probe.wait_for(lambda m: m.topic.endswith("/events/inspection"), count=3)
        assert [payload(m)["event_id"] for m in events] == ["ev-0", "ev-1", "ev-2"]
        assert all(payload(m)["v"] == 1 and payload(m)["device_id"] == "dev1" and payload(m)["ts"] for m in events)
        assert probe.wait_for(lambda m: m.topic == f"{BASE}/status")[0].payload == b"online"
        assert time.sleep(0.3) or outbox.backlog(store.conn)["rows"] == 0  # deleted once acknowledged
        late = Probe(broker.port, [f"{BASE}/state", f"{BASE}/status"])  # a dashboard that connects later
        state = late.wait_for(lambda m: m.topic == f"{BASE}/state")
        assert state[0].retain and payload(state[0])["fps"] == 12.5 and len(late.on(f"{BASE}/state")) == 1
        assert late.wait_for(lambda m: m.topic == f"{BASE}/status")[0].payload == b"online"
        late.close()
    finally:
        svc.stop()
        probe.close()
    # a clean stop says offline itself (the will only fires on a lost connection)
    after = Probe(broker.port, f"{BASE}/status")
    assert after.wait_for(lambda m: True)[0].payload == b"offline"
    after.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_batched_events_and_historical_marking(store, broker, protocol):
    probe = Probe(broker.port, f"{BASE}/events/#")
    with store.transaction() as conn:
        for i in range(7):
            outbox.enqueue(conn, f"{BASE}/events/inspection", event("dev1", event_id=f"b-{i}"))
        conn.execute("UPDATE outbox SET created_at = created_at - 3600")  # written an hour ago
    svc = make_service(store, broker.port, batch_events=3, historical_after_s=60, protocol=protocol)
    svc.start()
    try:
        msgs = probe.wait_for(lambda m: True, count=3)
        bodies = [payload(m) for m in msgs]
        assert [b["count"] for b in bodies] == [3, 3, 1]
        ids = [e["event_id"] for b in bodies for e in b["events"]]
        assert ids == [f"b-{i}" for i in range(7)]
        assert all(e["historical"] is True for b in bodies for e in b["events"])
        if protocol == "5":  # MQTT 3.1.1 has no user properties: the JSON field is the marker there
            assert ("historical", "true") in msgs[0].properties.UserProperty
    finally:
        svc.stop()
        probe.close()


LAST_WILL_DEVICE = """
import sys, time
from smartstock.config import Config
from smartstock.sync.client import MqttClient
from smartstock.sync.topics import Topics
cfg = Config.model_validate({"device": {"device_id": "dev1"}, "mqtt": {"port": int(sys.argv[1]), "keepalive_s": 5}})
c = MqttClient(cfg.mqtt, Topics.from_config(cfg.mqtt, cfg.device))
c.start()
assert c.wait_connected(10)
print("connected", flush=True)
time.sleep(600)
"""


def test_last_will_says_offline_when_the_device_process_dies(broker):
    dev = subprocess.Popen([sys.executable, "-c", LAST_WILL_DEVICE, str(broker.port)], stdout=subprocess.PIPE,
                           text=True)
    try:
        assert dev.stdout.readline().strip() == "connected"
        probe = Probe(broker.port, f"{BASE}/status")
        assert probe.wait_for(lambda m: m.payload == b"online")
        dev.send_signal(signal.SIGKILL)
        dev.wait(10)
        offline = probe.wait_for(lambda m: m.payload == b"offline", timeout=15)
        assert offline
        probe.close()
    finally:
        if dev.poll() is None:
            dev.kill()
    late = Probe(broker.port, f"{BASE}/status")  # and it stays retained for dashboards that come later
    assert late.wait_for(lambda m: True)[0].payload == b"offline"
    late.close()


def test_discovery_and_republish_when_home_assistant_comes_online(service, broker):
    probe = Probe(broker.port, "homeassistant/#")
    configs = probe.wait_for(lambda m: m.topic.endswith("/config"), count=15)  # 9 device entities + 3 per SKU x 2
    by_topic = {m.topic: payload(m) for m in configs}
    late = Probe(broker.port, "homeassistant/#")  # HA started later still finds them: they are retained
    assert {m.topic for m in late.wait_for(lambda m: m.retain, count=15)} == set(by_topic)
    late.close()
    update = by_topic["homeassistant/update/smartstock_dev1/model/config"]
    assert update["state_topic"] == f"{BASE}/model/state"
    assert update["availability_topic"] == f"{BASE}/status"
    onhand = by_topic[f"homeassistant/sensor/{node_id('dev1')}/{object_id('PCB-200')}_on_hand/config"]
    assert onhand["state_topic"] == f"{BASE}/inventory/PCB-200" and "on_hand" in onhand["value_template"]
    assert {p["device"]["identifiers"][0] for p in by_topic.values()} == {"smartstock_dev1"}
    assert len({p["unique_id"] for p in by_topic.values()}) == len(by_topic)
    for sensor in ("defect_rate", "fps", "open_alerts", "outbox_backlog"):
        assert f"homeassistant/sensor/smartstock_dev1/{sensor}/config" in by_topic
    assert "homeassistant/binary_sensor/smartstock_dev1/camera/config" in by_topic
    before = len(probe.messages)
    probe.publish("homeassistant/status", "online")
    again = probe.wait_for(lambda m: m.topic.endswith("/config"), count=15, since=before)
    assert {m.topic for m in again} == set(by_topic)
    probe.close()


def test_inbound_sales_are_validated_cached_and_answered(service, broker, store):
    probe = Probe(broker.port, f"{BASE}/response/#")
    probe.publish(f"{BASE}/sales/in", json.dumps({"id": "S-1", "sku": "PCB-100", "date": "2026-01-05", "quantity": 4,
                                                  "price": 9.5}))
    ok = payload(probe.wait_for(lambda m: m.topic == f"{BASE}/response/sales")[0])
    assert ok["ok"] and ok["accepted"] == ["S-1"] and ok["request_id"] == "S-1"
    batch = {"request_id": "batch-7", "records": [
        {"id": "S-1", "sku": "PCB-100", "date": "2026-01-05", "quantity": 4},           # re-sent: duplicate
        {"id": "S-2", "sku": "PCB-100", "date": "2026-02-30", "quantity": 1},           # no such date
        {"id": "S-3", "sku": "PCB-200", "date": "2026-01-06", "quantity": -2},          # negative
        {"id": "S-4", "sku": "PCB-200", "date": "2026-01-06", "qty": 2},                # typo in a field
        {"id": "S-5", "sku": "PCB-200", "date": "2026-01-06", "quantity": 2.5}]}
    probe.publish(f"{BASE}/sales/in", json.dumps(batch))
    res = payload(probe.wait_for(lambda m: b"batch-7" in m.payload)[0])
    assert not res["ok"] and res["accepted"] == ["S-5"] and res["duplicates"] == ["S-1"]
    reasons = {r["id"]: r["reason"] for r in res["rejected"]}
    assert "calendar date" in reasons["S-2"] and "quantity" in reasons["S-3"] and "'qty'" in reasons["S-4"]
    probe.publish(f"{BASE}/sales/in", b"{not json")
    bad = payload(probe.wait_for(lambda m: b"not valid JSON" in m.payload)[0])
    assert bad["ok"] is False and "line 1 column 2" in bad["error"]
    rows = store.query("SELECT natural_key, sku, quantity, price, source FROM sales ORDER BY natural_key")
    assert [tuple(r) for r in rows] == [("mqtt:S-1", "PCB-100", 4.0, 9.5, "mqtt"), ("mqtt:S-5", "PCB-200", 2.5, None, "mqtt")]
    probe.close()


def test_commands_answered_retained_ignored_oversize_refused(store, broker):
    svc = make_service(store, broker.port, max_payload_kb=1, reply_prefix="replies")
    seen: list[tuple[str, float]] = []

    def set_threshold(args):
        label, value = parse_set_threshold(args)
        seen.append((label, value))
        return {"label": label, "threshold": value}

    svc.register_command("set-threshold", set_threshold)
    svc.start()
    assert svc.client.wait_subscribed(10)
    probe = Probe(broker.port, [f"{BASE}/response/#", "replies/#", f"{BASE}/status"])
    try:
        def ask(name: str, body, **kw) -> dict:
            raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
            probe.publish(f"{BASE}/cmd/{name}", raw, **kw)
            rid = body.get("request_id") if isinstance(body, dict) else None
            return payload(probe.wait_for(lambda m: m.topic == f"{BASE}/response/{name}"
                                          and payload(m).get("request_id") == rid)[-1])

        pong = ask("ping", {"request_id": "r1"})
        assert pong["ok"] and pong["result"]["pong"] and pong["command"] == "ping" and pong["device_id"] == "dev1"
        assert ask("sync-now", {"request_id": "r2"})["result"]["connected"] is True
        assert ask("set-threshold", {"request_id": "r3", "args": {"label": "defect", "threshold": 0.7}})["ok"]
        bad = ask("set-threshold", {"request_id": "r4", "args": {"label": "defect", "threshold": 7}})
        assert not bad["ok"] and "between 0 and 1" in bad["error"]
        assert seen == [("defect", 0.7)]
        unknown = ask("reboot-plc", {"request_id": "r5"})
        assert not unknown["ok"] and "unknown command" in unknown["error"] and "ping" in unknown["error"]
        big = ask("ping", b"{" + b" " * 2000 + b"}")
        assert not big["ok"] and "max_payload_kb" in big["error"]
        rebirth = ask("rebirth", {"request_id": "r6"})
        assert rebirth["ok"] and rebirth["result"]["discovery"] > 0
        snap = ask("snapshot", {"request_id": "r7"})
        assert snap["ok"] and snap["result"]["sync"]["connected"] == 1
        # MQTT 5 request/response: the reply goes to the given topic with the correlation data
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "replies/tech-1"
        props.CorrelationData = b"corr-42"
        probe.publish(f"{BASE}/cmd/ping", json.dumps({"request_id": "r8"}), properties=props)
        reply = probe.wait_for(lambda m: m.topic == "replies/tech-1")[0]
        assert payload(reply)["request_id"] == "r8" and reply.properties.CorrelationData == b"corr-42"
        # a retained command is never executed (it would run again on every reconnect)
        n_before = len(probe.on(f"{BASE}/response/set-threshold"))
        probe.publish(f"{BASE}/cmd/set-threshold",
                      json.dumps({"request_id": "r9", "args": {"label": "defect", "threshold": 0.1}}), retain=True)
        assert ask("ping", {"request_id": "r10"})["ok"]  # commands are handled in order: r9 was seen before
        time.sleep(0.3)
        assert seen == [("defect", 0.7)] and len(probe.on(f"{BASE}/response/set-threshold")) == n_before
        assert svc.commands.counters["retained_ignored"] >= 1
    finally:
        svc.stop()
    # MQTT 3.1.1 has no retain-as-published, but the stale retained copy delivered on subscribe is ignored too
    svc = make_service(store, broker.port, protocol="3.1.1")
    svc.register_command("set-threshold", set_threshold)
    svc.start()
    try:
        assert svc.client.wait_subscribed(10)
        probe.wait_for(lambda m: m.topic == f"{BASE}/status", count=1)
        deadline = time.monotonic() + 5
        while svc.commands.counters["retained_ignored"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert svc.commands.counters["retained_ignored"] == 1 and seen == [("defect", 0.7)]
    finally:
        svc.stop()
        probe.publish(f"{BASE}/cmd/set-threshold", b"", retain=True)  # clear the retained message
        probe.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_subscription_hook_works_before_and_after_connect(store, broker, protocol):
    """The OTA agent subscribes through the service, sometimes long after the connection is up."""
    svc = make_service(store, broker.port, protocol=protocol, ha_discovery=False)
    early: list = []
    late: list = []
    svc.subscribe(f"{BASE}/model/desired", early.append)
    svc.start()
    try:
        assert svc.client.wait_subscribed(10)
        svc.subscribe(f"{BASE}/model/artifact/+", late.append)
        time.sleep(0.3)
        probe = Probe(broker.port, "unused/#")
        probe.publish(f"{BASE}/model/desired", b'{"kind":"x"}', retain=True)
        probe.publish(f"{BASE}/model/artifact/abc", b"\x00\x01")
        deadline = time.monotonic() + 10
        while (not early or not late) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert early and early[0].payload == b'{"kind":"x"}'
        assert late and late[0].topic == f"{BASE}/model/artifact/abc" and late[0].payload == b"\x00\x01"
        probe.publish(f"{BASE}/model/desired", b"", retain=True)
        probe.close()
    finally:
        svc.stop()


def test_start_sync_step_wires_set_threshold_and_republish(store, broker):
    """`start_sync(...)` as the app's step calls it: typed arguments, a real store and broker."""
    from edge.sync_worker import start_sync
    from tests.edge_fakes import FakeClassifier

    cfg = Config.model_validate({"device": {"device_id": "dev1"}, "inspection": {"sku": "PCB-9"},
                                 "mqtt": {"enabled": True, "port": broker.port, "reconnect_min_s": 0.1}})
    serving = [FakeClassifier(thresholds={"defect": 0.5})]
    republished: list[int] = []
    svc = start_sync(cfg.mqtt, cfg.device, store, skus=[cfg.inspection.sku], state=lambda: {"fps": 1.0},
                     classifier=lambda: serving[-1], republish=lambda: republished.append(1))
    probe = Probe(broker.port, [f"{BASE}/response/#", f"{BASE}/sync", "homeassistant/#"])
    try:
        assert svc.client.wait_subscribed(10)
        serving.append(FakeClassifier(model_id="swapped", thresholds={"defect": 0.5}))  # a swap since the start
        probe.publish(f"{BASE}/cmd/set-threshold", json.dumps({"request_id": "t1", "args": {"label": "defect",
                                                                                         "threshold": 0.8}}))
        ok = payload(probe.wait_for(lambda m: b'"t1"' in m.payload)[0])
        assert ok["ok"] and serving[-1].thresholds == {"defect": 0.8} and serving[0].thresholds == {"defect": 0.5}
        probe.publish(f"{BASE}/cmd/set-threshold", json.dumps({"request_id": "t2", "args": {"label": "scratch",
                                                                                         "threshold": 0.8}}))
        bad = payload(probe.wait_for(lambda m: b'"t2"' in m.payload)[0])
        assert not bad["ok"] and "ok, defect" in bad["error"] and serving[-1].thresholds == {"defect": 0.8}
        serving.append(None)  # not serving yet: a clear refusal, not an AttributeError
        probe.publish(f"{BASE}/cmd/set-threshold", json.dumps({"request_id": "t3", "args": {"label": "defect",
                                                                                         "threshold": 0.7}}))
        none = payload(probe.wait_for(lambda m: b'"t3"' in m.payload)[0])
        assert not none["ok"] and "no model is serving" in none["error"]
        probe.publish(f"{BASE}/cmd/rebirth", json.dumps({"request_id": "r1"}))
        assert payload(probe.wait_for(lambda m: b'"r1"' in m.payload)[0])["ok"]
        deadline = time.monotonic() + 10
        while not republished and time.monotonic() < deadline:
            time.sleep(0.05)
        assert republished == [1]
        # cmd/label: an operator's label for a stored snapshot; hostile arguments are refused
        from smartstock.store.snapshots import insert_snapshots, snapshot_row

        sid = "0190f3c2a1b27c4e9d3f8a6b5c4d3e2f"
        with store.transaction() as conn:
            insert_snapshots(conn, [snapshot_row(sid, "2026-11-30T10:00:00.000Z", f"x_{sid}.jpg", "uncertain",
                                                 "ok", {"ok": 0.55, "defect": 0.45}, "m", 1)])
        for rid, args in (("l1", {"id": sid, "label": "scratch"}), ("l2", {"id": sid, "label": "../../etc/x"}),
                          ("l3", {"id": "f" * 32, "label": "ok"}), ("l4", {"id": sid, "label": "ok", "file": "/x"})):
            probe.publish(f"{BASE}/cmd/label", json.dumps({"request_id": rid, "args": args}))
        answers = {r: payload(probe.wait_for(lambda m, r=r: f'"{r}"'.encode() in m.payload)[0]) for r in
                   ("l1", "l2", "l3", "l4")}
        assert answers["l1"]["ok"] and answers["l1"]["result"]["label"] == "scratch"
        assert [answers[r]["ok"] for r in ("l2", "l3", "l4")] == [False, False, False]
        assert "label must be" in answers["l2"]["error"] and "no snapshot" in answers["l3"]["error"]
        assert store.query_one("SELECT operator_label, labelled_by FROM snapshots")[:] == ("scratch", "mqtt")
        sync = payload(probe.wait_for(lambda m: m.topic == f"{BASE}/sync")[0])
        assert {"published", "acked", "resent", "dropped", "backlog", "connected"} <= set(sync)
        sku_obj = f"/{object_id('PCB-9')}_on_hand/"
        assert probe.wait_for(lambda m: sku_obj in m.topic)  # the configured SKU is discovered
    finally:
        probe.close()
        svc.stop(drain_s=0.5)
    assert not svc.client.connected


def test_cap_policy_runs_in_the_service_and_is_counted(store, caplog):
    svc = make_service(store, 1, outbox_max_rows=100)  # never started: no broker needed
    with store.transaction() as conn:
        for i in range(150):
            outbox.enqueue(conn, f"{BASE}/telemetry", {"i": i}, priority=outbox.PRIORITY_TELEMETRY)
        for i in range(30):
            outbox.enqueue(conn, f"{BASE}/events/inspection", event("dev1"))
    assert svc.enforce_caps() == {"telemetry": 80}
    assert svc.stats()["dropped"] == 80 and svc.stats()["dropped_telemetry"] == 80
    assert "dropped 80 telemetry" in caplog.text
    assert outbox.backlog(store.conn)["rows"] == 100
