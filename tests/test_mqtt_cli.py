"""`smartstock mqtt tail|cmd|pub-sale` as a technician runs them, against a device on a real mosquitto."""

from __future__ import annotations

import json

import pytest

from smartstock.sync import outbox
from smartstock.sync.payloads import message
from tests.test_mqtt_broker import BASE, make_service


@pytest.fixture
def device(store, broker):
    with store.transaction() as conn:
        outbox.enqueue(conn, f"{BASE}/state", message("dev1", fps=9.5), retain=True, priority=outbox.PRIORITY_STATE)
    svc = make_service(store, broker.port, ha_discovery=False)
    svc.start()
    assert svc.client.wait_subscribed(10)
    yield svc
    svc.stop()


def test_tail_shows_retained_state_and_status(cli, broker, device):
    r = cli("mqtt", "tail", "--url", broker.url, "--device-id", "dev1", "--count", "3", "--timeout", "20")
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert any(" R " in ln and ln.split()[2] == f"{BASE}/status" and ln.endswith("online") for ln in lines), r.out
    assert any(ln.split()[2] == f"{BASE}/state" and '"fps":9.5' in ln for ln in lines), r.out
    j = cli("mqtt", "tail", "--url", broker.url, "--device-id", "dev1", "--topic", f"{BASE}/state", "--count", "1",
            "--json", "--timeout", "20")
    row = json.loads(j.out.splitlines()[0])
    assert row["retained"] is True and row["payload"]["fps"] == 9.5


def test_cmd_and_pub_sale_print_the_device_answer(cli, broker, device, store):
    ping = cli("mqtt", "cmd", "ping", "--url", broker.url, "--device-id", "dev1")
    assert ping.rc == 0, ping.err
    assert json.loads(ping.out)["result"]["pong"] is True
    sale = cli("mqtt", "pub-sale", "--url", broker.url, "--device-id", "dev1", "--sku", "PCB-100", "--quantity", "3",
               "--date", "2026-03-01", "--id", "cli-1")
    assert sale.rc == 0, sale.err
    assert json.loads(sale.out)["accepted"] == ["cli-1"]
    assert store.query_one("SELECT quantity FROM sales WHERE natural_key = 'mqtt:cli-1'")[0] == 3.0
    bad = cli("mqtt", "pub-sale", "--url", broker.url, "--device-id", "dev1", "--sku", "PCB-100", "--quantity", "-1")
    assert bad.rc == 3 and "quantity" in json.loads(bad.out)["error"]


def test_unreachable_broker_and_plaintext_with_tls_are_clear_errors(cli, tmp_path):
    from tests.fixtures.broker import free_port

    r = cli("mqtt", "tail", "--url", f"mqtt://127.0.0.1:{free_port()}", "--connect-timeout", "1")
    assert r.rc == 8 and "cannot reach the MQTT broker" in r.err and "Traceback" not in r.err
    cfg = tmp_path / "tls.toml"
    cfg.write_text('[mqtt]\nenabled = true\n[mqtt.tls]\ninsecure = false\n')
    r = cli("mqtt", "tail", "--config", str(cfg), "--url", "mqtt://127.0.0.1:1883")
    assert r.rc == 2 and "plaintext" in r.err


def test_tail_with_discovery_finds_the_home_assistant_configs(cli, broker, state_dir):
    from smartstock.config import Config
    from smartstock.store import open_store
    from edge.sync_worker import SyncService
    from smartstock.sync.discovery import node_id, object_id

    store = open_store(state_dir)
    cfg = Config.model_validate({"device": {"device_id": "line-9"}, "mqtt": {"enabled": True, "port": broker.port}})
    svc = SyncService(cfg.mqtt, cfg.device, store, skus_provider=lambda: ["A-1"])
    svc.start()
    try:
        assert svc.client.wait_subscribed(10)
        r = cli("mqtt", "tail", "--url", broker.url, "--device-id", "line-9", "--discovery",
                "--topic", "smartstock/plant/line1/line-9/status", "--count", "13", "--timeout", "20")
        topics = {ln.split()[2] for ln in r.out.splitlines()}
        node = node_id("line-9")
        assert f"homeassistant/sensor/{node}/{object_id('A-1')}_on_hand/config" in topics, r.out
        assert f"homeassistant/update/{node}/model/config" in topics
    finally:
        svc.stop()
        store.close()
