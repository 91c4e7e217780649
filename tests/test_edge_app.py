"""The App in-process (fake classifier = our own interface): start steps and reverse stop, HTTP
routes and their refusals, health reasons, command-line overrides, the sd_notify client."""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from edge.app import App
from edge.notify import Notifier
from edge.samples import write_parts
from edge.commands.run_cmd import apply_overrides
from smartstock.config import Config
from smartstock.errors import ConfigError
from tests.conftest import wait_for
from tests.edge_fakes import FakeClassifier


def _get(port: int, path: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


@pytest.fixture
def app(tmp_path):
    write_parts(tmp_path / "parts", 9, size=48)
    for i in range(3):  # bright frames: the fake classifier calls them defective
        cv2.imwrite(str(tmp_path / "parts" / f"zz-bright-{i}.png"), np.full((48, 48, 3), 220, np.uint8))
    cfg = Config()
    cfg.source.uri = str(tmp_path / "parts")
    cfg.http.port = 0
    cfg.ota.enabled = False
    a = App(cfg, tmp_path / "state", classifier=FakeClassifier())
    a.start()
    assert a.loop.done.wait(20)
    yield a
    a.stop()


def test_steps_start_in_order_and_stop_in_reverse(app):
    names = [n for n, _ in app._stops]
    assert app.sync is None and app.ota is None and "mqtt sync" not in names  # mqtt and ota are off
    assert names.index("store") < names.index("source") < names.index("inspection loop") < names.index("http")
    closed = []
    app._stops = [(n, (lambda n=n: closed.append(n))) for n, _ in app._stops]
    app.stop()
    assert closed == list(reversed(names))


def test_http_routes(app, tmp_path):
    port = app.http.port
    assert (app.state_dir / "http.port").read_text().strip() == str(port)
    code, body, _ = _get(port, "/healthz")
    assert code == 200 and body.decode().startswith("ok")
    code, body, ctype = _get(port, "/api/status")
    status = json.loads(body)
    assert ctype == "application/json" and status["counters"]["parts_inspected"] == 12
    assert status["recent"] and status["model"]["id"] == "fake-model" and status["camera"]["ended"]
    code, body, _ = _get(port, "/api/recent?limit=5")
    assert len(json.loads(body)["inspections"]) == 5
    code, body, ctype = _get(port, "/metrics")
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
    # the execution provider serving the model is shown in the status and in /metrics (issue 16)
    assert status["model"]["provider"] == "cpu" and app.state_summary()["provider"] == "cpu"
    assert 'smartstock_model_info{device_id="' in body.decode() and 'provider="cpu"} 1' in body.decode()
    snap = next(r["snapshot"] for r in status["recent"] if r["snapshot"])
    code, body, ctype = _get(port, f"/snapshots/{snap}")
    assert code == 200 and ctype == "image/jpeg" and body[:2] == b"\xff\xd8"
    for bad in ("/snapshots/../smartstock.sqlite", "/snapshots/%2e%2e%2fsmartstock.sqlite", "/../../etc/passwd",
                "/%2e%2e/%2e%2e/etc/passwd", "/nope.js"):
        assert _get(port, bad)[0] == 404, bad
    assert _get(port, "/")[0] == 200


def test_health_reports_the_reason(app):
    app.source._status = "reconnecting"
    app.source.last_error = "no frame for 5 s"
    app.source._inner.close()
    app.source._inner._ended = False
    ok, reason = app.health()
    assert not ok and reason == "camera reconnecting: no frame for 5 s"
    # the camera is not the watchdog's business: /livez (and WATCHDOG=1) stay up, /healthz says why not
    assert app.alive() == (True, "alive")
    assert _get(app.http.port, "/livez")[0] == 200
    code, body, _ = _get(app.http.port, "/healthz")
    assert code == 503 and body.decode().startswith("camera reconnecting")
    app.loop.worker_error = "RuntimeError: boom"
    assert app.health() == (False, "inspection loop failed: RuntimeError: boom")
    assert app.alive() == (False, "inspection loop failed: RuntimeError: boom")
    assert _get(app.http.port, "/livez")[0] == 503


def _args(**kw) -> argparse.Namespace:
    base = dict(source=None, loop=None, fps=None, model=None, sku=None, device_id=None, http_host=None,
                http_port=None, mqtt=None, max_frames=None)
    return argparse.Namespace(**{**base, **kw})


def test_overrides(monkeypatch):
    monkeypatch.delenv("SMARTSTOCK_MQTT_PASSWORD", raising=False)
    cfg = apply_overrides(Config(), _args(source="/dev/video1", sku="X-1", device_id="cam-9", http_port=0,
                                          mqtt="mqtts://bob:s%40cret@broker.local"))
    assert (cfg.source.uri, cfg.inspection.sku, cfg.device.device_id, cfg.http.port) == ("/dev/video1", "X-1", "cam-9", 0)
    assert cfg.mqtt.enabled and cfg.mqtt.host == "broker.local" and cfg.mqtt.port == 8883 and cfg.mqtt.tls is not None
    assert cfg.mqtt.username == "bob" and os.environ["SMARTSTOCK_MQTT_PASSWORD"] == "s@cret"
    assert "s@cret" not in cfg.model_dump_json()
    cfg = apply_overrides(Config(), _args(mqtt="mqtt://broker:1884"))
    assert cfg.mqtt.port == 1884 and cfg.mqtt.tls is None
    # one URL parser for --mqtt, `ota push --url` and `mqtt --url`: plaintext is refused when TLS is configured
    with pytest.raises(ConfigError, match="--mqtt .* is plaintext but mqtt.tls is configured"):
        apply_overrides(Config.model_validate({"mqtt": {"tls": {}}}), _args(mqtt="mqtt://broker:1883"))
    for bad in (dict(mqtt="http://x"), dict(mqtt="mqtt://x:99999"), dict(device_id="has space"), dict(max_frames=0),
                dict(http_port=70000)):
        with pytest.raises(ConfigError):
            apply_overrides(Config(), _args(**bad))


def test_notifier_speaks_sd_notify(tmp_path):
    path = tmp_path / "n.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000"})
    assert n.enabled and n.ping_interval_s() == 2.0
    assert n.extend_start(90, "upgrading") and n.ready("up") and n.watchdog() and n.stopping()
    assert [s.recv(100) for _ in range(4)] == [b"EXTEND_TIMEOUT_USEC=90000000\nSTATUS=upgrading",
                                               b"READY=1\nSTATUS=up", b"WATCHDOG=1", b"STOPPING=1"]
    s.close()
    assert not Notifier({}).enabled and not Notifier({}).ready()
    assert Notifier({"NOTIFY_SOCKET": "@abstract"}).address == "\0abstract"
    assert Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_s is None  # meant for another process


def test_a_store_that_refuses_writes_turns_healthz_red_and_counts_until_it_accepts_them_again(tmp_path):
    """A full disk, as SQLite itself reports it (max_page_count reached: 'database or disk is full'),
    under the real loop: every batch's commit fails, /metrics counts them, /healthz goes red; once
    there is room again the next commit succeeds and health comes back."""
    write_parts(tmp_path / "parts", 6, size=48)
    cfg = Config()
    cfg.source.uri, cfg.source.loop, cfg.source.fps = str(tmp_path / "parts"), True, 200.0
    cfg.http.port = 0
    cfg.ota.enabled = False
    a = App(cfg, tmp_path / "state", classifier=FakeClassifier())
    a.start()
    try:
        port = a.http.port
        assert wait_for(lambda: a.metrics.counters["parts_inspected"] > 0)
        assert _get(port, "/healthz")[0] == 200 and a.metrics.counters["store_errors"] == 0
        pages = a.store.query_one("PRAGMA page_count")[0]
        a.store.execute(f"PRAGMA max_page_count = {pages}")  # on the connection the loop writes with
        assert wait_for(lambda: _get(port, "/healthz")[0] == 503), "health stayed green while writes failed"
        reason = _get(port, "/healthz")[1].decode()
        assert reason.startswith("store writes failing") and "full" in reason
        metrics = _get(port, "/metrics")[1].decode()
        counted = float(re.search(r"^smartstock_store_errors_total\{[^}]*\} (\S+)$", metrics, re.M).group(1))
        assert counted >= 3
        inspected = a.metrics.counters["parts_inspected"]
        a.store.execute("PRAGMA max_page_count = 1073741823")  # room again
        assert wait_for(lambda: _get(port, "/healthz")[0] == 200), "health did not recover once writes succeeded"
        assert a.metrics.counters["parts_inspected"] > inspected and a.loop.store_failures == 0
    finally:
        a.stop()


def test_a_pending_schema_upgrade_asks_systemd_for_more_start_time(tmp_path):
    import sqlite3

    from smartstock.store import open_store

    state = tmp_path / "state"
    open_store(state).close()
    with sqlite3.connect(state / "smartstock.sqlite") as conn:  # a store from before migration 0004
        for stmt in ("DROP TRIGGER stock_totals_add", "DROP TRIGGER stock_movements_append_only",
                     "DROP INDEX stock_movements_ts", "DROP TABLE stock_totals",
                     "DELETE FROM schema_migrations WHERE name = '0004_stock_totals'"):
            conn.execute(stmt)
    path = tmp_path / "n.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(5)
    try:
        for upgrade in (True, False):
            a = App(Config(), state, classifier=FakeClassifier(), notifier=Notifier({"NOTIFY_SOCKET": str(path)}))
            a.start_store()
            a.store.close()
            if upgrade:
                assert s.recv(200).startswith(b"EXTEND_TIMEOUT_USEC=1800000000\nSTATUS=upgrading the store (0004")
        s.setblocking(False)
        with pytest.raises(BlockingIOError):  # once upgraded, start-up asks for nothing
            s.recv(200)
    finally:
        s.close()
