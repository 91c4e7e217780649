"""The real `smartstock run` with `--mqtt` against a real mosquitto: every inspected part reaches the
broker as an event whose id matches the store, with availability, retained state, discovery, a
command answered while running, and /metrics showing the sync counters."""

from __future__ import annotations

import json

from smartstock.sync.discovery import node_id, object_id
from tests.fixtures.broker import Probe
from tests.conftest import service_port, wait_until
from tests.test_service import _count, _get, _start, model_file, parts  # noqa: F401 (fixtures)

BASE = "smartstock/plant/line1/test-cam"


def test_service_publishes_every_part_and_answers_commands(tmp_path, model_file, parts, broker):  # noqa: F811
    probe = Probe(broker.port, ["smartstock/#", "homeassistant/#"])
    state = tmp_path / "state"
    n = 30
    proc = _start(tmp_path, model_file, state, "--source", str(parts), "--loop", "--fps", "15", "--max-frames",
                  str(n), "--mqtt", broker.url)
    try:
        port = service_port(state, proc)
        probe.wait_for(lambda m: m.topic == f"{BASE}/status" and m.payload == b"online", timeout=30)
        probe.publish(f"{BASE}/cmd/ping", json.dumps({"request_id": "svc-1"}))
        pong = json.loads(probe.wait_for(lambda m: m.topic == f"{BASE}/response/ping")[0].payload)
        assert pong["ok"] and pong["request_id"] == "svc-1"
        wait_until(lambda: _count(state, "SELECT COUNT(*) FROM inspections") >= 3, what="first inspections")
        code, metrics = _get(port, "/metrics")
        assert code == 200 and 'smartstock_mqtt_connected{device_id="test-cam"} 1' in metrics
        assert "smartstock_mqtt_acked_total" in metrics
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    events = probe.wait_for(lambda m: m.topic == f"{BASE}/events/inspection", count=n, timeout=30)
    got = {json.loads(m.payload)["event_id"] for m in events}
    import sqlite3

    conn = sqlite3.connect(state / "smartstock.sqlite")
    stored = {r[0] for r in conn.execute("SELECT event_id FROM inspections")}
    left = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    conn.close()
    assert got == stored and len(stored) == n
    assert left == 0, "the service drains its outbox before it exits"
    assert probe.on(f"{BASE}/status")[-1].payload == b"offline"
    state_msg = json.loads(probe.wait_for(lambda m: m.topic == f"{BASE}/state")[-1].payload)
    assert state_msg["device_id"] == "test-cam" and "fps" in state_msg
    onhand = f"homeassistant/sensor/{node_id('test-cam')}/{object_id('PCB-T')}_on_hand/config"
    assert probe.wait_for(lambda m: m.topic == onhand)
