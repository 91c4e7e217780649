"""TLS (generated CA, server and client certificates) and password auth against a real mosquitto."""

from __future__ import annotations

import json
import logging
import time

import pytest

from edge.sync_worker import SyncService
from smartstock.config import Config
from smartstock.errors import ConfigError
from smartstock.sync import outbox
from smartstock.sync.client import MqttClient, config_from_url
from smartstock.sync.payloads import event
from tests.fixtures.broker import Probe, password_file

BASE = "smartstock/plant/line1/dev1"


def service(store, port: int, **mqtt) -> SyncService:
    cfg = Config.model_validate({"device": {"device_id": "dev1"},
                                 "mqtt": {"enabled": True, "host": "127.0.0.1", "port": port, "reconnect_min_s": 0.1,
                                          "reconnect_max_s": 0.5, "ha_discovery": False, **mqtt}})
    return SyncService(cfg.mqtt, cfg.device, store)


def never_connects(svc: SyncService, seconds: float = 1.5) -> bool:
    svc.start()
    try:
        return not svc.client.wait_connected(seconds)
    finally:
        svc.stop()


def test_tls_with_generated_ca_carries_events(store, broker_factory, tls_files):
    b = broker_factory("tls", extra_conf=tls_files.listener_conf())
    probe = Probe(b.port, f"{BASE}/events/#", tls_ca=tls_files.ca)
    with store.transaction() as conn:
        outbox.enqueue(conn, f"{BASE}/events/inspection", event("dev1", event_id="tls-1"))
    svc = service(store, b.port, tls={"ca_file": str(tls_files.ca)})
    svc.start()
    try:
        msg = probe.wait_for(lambda m: True)[0]
        assert json.loads(msg.payload)["event_id"] == "tls-1"
    finally:
        svc.stop()
        probe.close()


def test_tls_refuses_a_broker_signed_by_another_ca_and_a_plaintext_listener(store, broker, broker_factory,
                                                                             tls_files, caplog):
    b = broker_factory("tls", extra_conf=tls_files.listener_conf())
    wrong_ca = service(store, b.port, tls={"ca_file": str(tls_files.other_ca)})
    with caplog.at_level(logging.ERROR, logger="smartstock.sync.client"):
        assert never_connects(wrong_ca)
    assert "TLS handshake failed" in caplog.text and "CERTIFICATE_VERIFY_FAILED" in wrong_ca.client.last_error
    # TLS configured, broker speaks plaintext: no fallback, the device never says it is online there
    probe = Probe(broker.port, f"{BASE}/#")
    assert never_connects(service(store, broker.port, tls={"ca_file": str(tls_files.ca)}))
    time.sleep(0.2)
    assert probe.on(f"{BASE}/status") == []
    probe.close()


def test_mutual_tls_needs_the_client_certificate(store, broker_factory, tls_files):
    b = broker_factory("mtls", extra_conf=tls_files.listener_conf(require_certificate=True))
    assert never_connects(service(store, b.port, tls={"ca_file": str(tls_files.ca)}))
    svc = service(store, b.port, tls={"ca_file": str(tls_files.ca), "cert_file": str(tls_files.client_cert),
                                      "key_file": str(tls_files.client_key)})
    svc.start()
    try:
        assert svc.client.wait_connected(10)
    finally:
        svc.stop()


def test_tls_config_errors_name_the_key(store, tls_files, tmp_path):
    with pytest.raises(ConfigError, match=r"mqtt\.tls\.ca_file: .*missing\.pem does not exist"):
        service(store, 1883, tls={"ca_file": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError, match="cert_file and key_file must be given together"):
        service(store, 1883, tls={"ca_file": str(tls_files.ca), "cert_file": str(tls_files.client_cert)})
    with pytest.raises(ConfigError, match="plaintext but mqtt.tls is configured"):
        config_from_url(Config.model_validate({"mqtt": {"tls": {}}}).mqtt, "mqtt://broker:1883")
    cfg, password = config_from_url(Config().mqtt, "mqtts://tech:s%40cret@broker.local")
    assert (cfg.host, cfg.port, cfg.tls is not None, cfg.username, password) == ("broker.local", 8883, True, "tech", "s@cret")


def test_password_auth_from_env_or_file_and_wrong_password_refused(store, broker_factory, tmp_path, monkeypatch,
                                                                   caplog):
    pw = password_file(tmp_path / "auth", "device1", "correct-horse")
    b = broker_factory("auth", allow_anonymous=False, extra_conf=f"password_file {pw}")
    monkeypatch.setenv("TEST_MQTT_PW", "correct-horse")
    ok = service(store, b.port, username="device1", password_env="TEST_MQTT_PW")
    ok.start()
    try:
        assert ok.client.wait_connected(10)
    finally:
        ok.stop()
    secret = tmp_path / "mqtt-password"
    secret.write_text("correct-horse\n")
    from_file = service(store, b.port, username="device1", password_file=str(secret))
    from_file.start()
    try:
        assert from_file.client.wait_connected(10)
    finally:
        from_file.stop()
    monkeypatch.setenv("TEST_MQTT_PW", "wrong-battery")
    bad = service(store, b.port, username="device1", password_env="TEST_MQTT_PW")
    with caplog.at_level(logging.DEBUG):
        assert never_connects(bad)
    assert "refused the connection" in bad.client.last_error
    assert "wrong-battery" not in caplog.text and "correct-horse" not in caplog.text
    anonymous = MqttClient(Config.model_validate({"mqtt": {"port": b.port, "reconnect_min_s": 0.1}}).mqtt,
                           bad.topics, client_id="anon")
    anonymous.start()
    try:
        assert not anonymous.wait_connected(1.0)
    finally:
        anonymous.stop()
