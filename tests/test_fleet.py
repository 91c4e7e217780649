"""`smartstock fleet status|serve` against a real mosquitto: one real `smartstock run` device on a
looping parts folder, plus two devices whose retained topics the test writes with the product's own
Topics and message builders (one stale, one sending hostile payloads). The JSON and table show the
right rows; the plant page in headless Chromium shows them, highlights the stale one and, when the
real device stops, shows it offline without a reload."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.samples import write_parts
from smartstock.fleet import collect, mqtt_client
from smartstock.store.db import iso_ts, utcnow
from smartstock.sync.payloads import dumps, message
from smartstock.sync.topics import Topics
from tests.conftest import service_port, stop_service
from tests.fixtures.broker import Broker, Probe, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REAL = Topics("smartstock", "plant", "line1", "real-cam")
HOSTILE = Topics("smartstock", "plant", "line2", "cam-b")
STALE = Topics("smartstock", "plant", "line2", "cam-c")
CONFIG = """
[device]
device_id = "real-cam"
site = "plant"
line = "line1"
[inspection]
sku = "PCB-F"
[forecast]
model = "seasonal-naive"
refresh_interval_s = 3600
[mqtt]
stats_interval_s = 1
[http]
port = 0
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMARTSTOCK_", "NOTIFY_", "WATCHDOG_"))}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def plant(tmp_path_factory, request):
    """A broker, the real device publishing to it, and the two written devices' retained topics."""
    base = tmp_path_factory.mktemp("fleet")
    broker = Broker(base / "broker").start()
    model = sorted(Path(request.getfixturevalue("defect_model_dir")).glob("*.onnx"))[0]
    write_parts(base / "parts", 12, size=96, defect_rate=0.3, seed=5)
    (base / "smartstock.toml").write_text(CONFIG, encoding="utf-8")
    state = base / "state"
    log = base / "device.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "smartstock", "run", "--config", str(base / "smartstock.toml"),
                                 "--model", str(model), "--state-dir", str(state), "--source", str(base / "parts"),
                                 "--loop", "--fps", "4", "--mqtt", broker.url], stdout=out, stderr=subprocess.STDOUT,
                                cwd=base, env=_env())
    probe = Probe(broker.port, ["smartstock/#"])
    try:
        service_port(state, proc, log)
        probe.wait_for(lambda m: m.topic == REAL.state and json.loads(m.payload).get("parts", 0) > 0, timeout=90)
        publish_written_devices(probe)
        yield {"broker": broker, "device": proc, "probe": probe, "log": log}
    finally:
        stop_service(proc)
        probe.close()
        broker.stop()


def publish_written_devices(probe: Probe) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    # cam-b: two cameras (one down), an open alert, a backlog; but its OTA state is a nesting bomb and its
    # fps is not a number.
    b = HOSTILE.device_id
    probe.publish(HOSTILE.status, b"online", retain=True)
    probe.publish(HOSTILE.state, dumps(message(b, model_id="pcb-defect", model_release=4, camera="down",
                                               cameras={"left": "ok", "right": "down"}, fps="fast",
                                               defect_rate=0.02, backlog=40)), retain=True)
    probe.publish(HOSTILE.alerts, dumps(message(b, alerts=[
        {"key": "camera_down:right", "kind": "camera_down", "sku": None, "severity": "critical",
         "message": "camera right down for 120 s", "data": {}, "opened_at": utcnow(), "updated_at": utcnow()}])),
        retain=True)
    probe.publish(HOSTILE.sync_stats, dumps(message(b, backlog=42, backlog_bytes=8000, in_flight=0)), retain=True)
    probe.publish(HOSTILE.model_state, b'{"v":1,"device_id":"cam-b","models":' + b"[" * 3000 + b"]" * 3000 + b"}",
                  retain=True)
    # cam-c: online, but its last state is 30 minutes old.
    c = STALE.device_id
    old = iso_ts((now - dt.timedelta(minutes=30)).timestamp())
    probe.publish(STALE.status, b"online", retain=True)
    probe.publish(STALE.state, dumps(message(c, ts=old, model_id="pcb-defect", model_release=3, camera="ok",
                                             cameras={"cam1": "ok"}, fps=8.0, defect_rate=0.01, backlog=0)), retain=True)
    probe.publish(STALE.alerts, dumps(message(c, ts=old, alerts=[])), retain=True)
    probe.publish("smartstock/plant/line2/no such device/state", b"{}", retain=True)  # not a topic level


def _by_id(doc: dict) -> dict[str, dict]:
    return {d["device_id"]: d for d in doc["devices"]}


def test_fleet_status_json_and_table_show_every_device(plant, cli):
    url = plant["broker"].url
    r = cli("fleet", "status", "--url", url, "--json", "--wait", "10")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    rows = _by_id(doc)
    assert set(rows) == {"real-cam", "cam-b", "cam-c"}, rows.keys()

    real = rows["real-cam"]
    assert (real["site"], real["line"], real["health"], real["online"], real["stale"]) == \
        ("plant", "line1", "online", True, False)
    assert real["model_id"] == "test-defect" and real["model_release"] == "1"
    assert (real["ota_status"], real["ota_error"]) == ("disabled", "no_keyring")  # no keyring in this config
    assert "ota.keyring_dir" in real["ota_detail"]
    assert real["camera"] == "ok" and real["cameras"] == {"cam1": "ok"}
    assert real["fps"] >= 0 and 0.0 <= real["defect_rate"] <= 1.0 and real["backlog"] >= 0
    assert real["problems"] == [] and real["unknown_fields"] == [], "the tool reads every field a device publishes"
    assert real["state_age_s"] < 60

    b = rows["cam-b"]
    assert b["health"] == "online" and b["camera"] == "down" and b["cameras"] == {"left": "ok", "right": "down"}
    assert b["open_alerts"] == 1 and b["alerts"][0]["kind"] == "camera_down" and b["backlog"] == 42
    assert b["fps"] is None and b["defect_rate"] == 0.02 and b["ota_status"] is None
    assert any("model/state: too deep" in p for p in b["problems"]) and any("state.fps" in p for p in b["problems"])

    c = rows["cam-c"]
    assert c["health"] == "stale" and c["stale"] and 29 * 60 < c["state_age_s"] < 40 * 60 and c["open_alerts"] == 0
    assert doc["summary"] == {"devices": 3, "online": 2, "offline": 0, "stale": 1, "unknown": 0, "with_alerts": 1
                              if not real["open_alerts"] else 2, "with_problems": 1}
    assert doc["counters"]["bad_topic"] == 1 and doc["counters"]["too_deep"] == 1

    only = json.loads(cli("fleet", "status", "--url", url, "--json", "--site", "plant", "--line", "line2").out)
    assert sorted(_by_id(only)) == ["cam-b", "cam-c"]
    later = json.loads(cli("fleet", "status", "--url", url, "--json", "--stale-minutes", "45").out)
    assert _by_id(later)["cam-c"]["health"] == "online"

    table = cli("fleet", "status", "--url", url)
    assert table.rc == 0 and "Traceback" not in table.err
    lines = {ln.split()[0]: ln for ln in table.out.splitlines() if ln.strip()}
    assert "STALE" in lines["cam-c"] and "30 min ago" in lines["cam-c"]
    assert "left:ok, right:down" in lines["cam-b"] and "too deep" in lines["cam-b"]
    assert "3 device(s)" in table.out and "1 stale" in table.out


def test_collect_takes_an_injected_client_factory(plant):
    made = []

    def factory(cfg, password, client_id):
        client = mqtt_client(cfg.model_copy(update={"protocol": "3.1.1"}), password, client_id)
        made.append(client)
        return client

    big = Topics("smartstock", "plant", "line3", "cam-big")
    plant["probe"].publish(big.state, b'{"v":1,"device_id":"cam-big","pad":"' + b"x" * 300_000 + b'"}', retain=True)
    try:
        t0 = time.monotonic()
        view = collect(plant["broker"].url, "smartstock", site="plant", wait_s=10.0, client_factory=factory)
        assert len(made) == 1 and not made[0].connected  # closed again
        assert {r.device_id for r in view.rows} == {"real-cam", "cam-b", "cam-c", "cam-big"}
        assert time.monotonic() - t0 < 10.0, "it returns once the retained messages stopped arriving"
        # MQTT 3.1.1 cannot ask the broker to hold big packets back: read, cut, counted
        assert view.counters["oversize"] == 1 and "over 256 KiB" in view.rows[-1].problems[0]
        # MQTT 5 (the default) asks for at most 260 KiB: the broker never sends it
        assert {r.device_id for r in collect(plant["broker"].url, wait_s=10.0).rows} == {"real-cam", "cam-b", "cam-c"}
    finally:
        plant["probe"].publish(big.state, b"", retain=True)  # an empty retained message deletes the topic
    assert collect(plant["broker"].url, site="elsewhere", wait_s=2.0).rows == []


def test_unreachable_broker_empty_broker_and_bad_options_are_clear_errors(cli, broker):
    r = cli("fleet", "status", "--url", broker.url, "--prefix", "nobody-here", "--wait", "2")
    assert r.rc == 1 and "no devices under nobody-here/+/+/" in r.err and r.out == ""
    r = cli("fleet", "status", "--url", f"mqtt://127.0.0.1:{free_port()}", "--connect-timeout", "2")
    assert r.rc == 8 and "cannot reach the MQTT broker 127.0.0.1" in r.err and "Traceback" not in r.err
    r = cli("fleet", "status", "--url", "http://127.0.0.1:1883")
    assert r.rc == 2 and "mqtt://" in r.err and "Traceback" not in r.err
    r = cli("fleet", "status", "--url", "mqtt://127.0.0.1:1", "--site", "a/#")
    assert r.rc == 2 and "--site 'a/#'" in r.err
    r = cli("fleet", "status", "--url", "mqtt://127.0.0.1:1", "--prefix", "smartstock/#")
    assert r.rc == 2 and "--prefix 'smartstock/#'" in r.err and "Traceback" not in r.err


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (make test installs it)")
def test_plant_page_shows_the_rows_and_follows_a_device_going_offline(plant, tmp_path):
    from playwright.sync_api import sync_playwright

    proc = subprocess.Popen([sys.executable, "-m", "smartstock", "fleet", "serve", "--url", plant["broker"].url,
                             "--http-port", "0"], stdout=subprocess.PIPE, stderr=open(tmp_path / "serve.log", "wb"),
                            text=True, env=_env())
    try:
        first = proc.stdout.readline()
        assert first.startswith("fleet page on http://"), (first, (tmp_path / "serve.log").read_text()[-2000:])
        url = first.split()[3]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pg = browser.new_page(viewport={"width": 1400, "height": 900})
            problems: list[str] = []
            pg.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            pg.on("pageerror", lambda e: problems.append(str(e)))
            pg.goto(url)
            pg.wait_for_function("document.querySelectorAll('#devices tr[data-device]').length === 3", timeout=20_000)
            rows = pg.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#devices tr[data-device]')]
                .map(r => [r.dataset.device, {cls: r.className, cells: [...r.cells].map(c => c.textContent),
                           problems: r.cells[11].title}]))""")
            assert rows["cam-c"]["cls"] == "health-stale" and rows["cam-c"]["cells"][2] == "stale"
            assert rows["real-cam"]["cls"] == "health-online" and rows["real-cam"]["cells"][4] == "test-defect r1"
            assert rows["cam-b"]["cells"][6] == "left: ok, right: down" and rows["cam-b"]["cells"][11].startswith("2 problems: ")
            assert "model/state: too deep" in rows["cam-b"]["problems"] and rows["real-cam"]["problems"] == ""
            stale_bg = pg.evaluate("getComputedStyle(document.querySelector('tr.health-stale td')).backgroundColor")
            online_bg = pg.evaluate("getComputedStyle(document.querySelector('tr.health-online td')).backgroundColor")
            assert stale_bg != online_bg, "a stale row stands out"
            alerts = pg.inner_text("#alerts")
            assert "cam-b" in alerts and "camera right down for 120 s" in alerts
            assert pg.inner_text("#conn") == "live"
            pg.screenshot(path=str(tmp_path / "fleet_page.png"), full_page=True)

            stop_service(plant["device"])  # publishes offline; the page follows without a reload
            pg.wait_for_function("document.querySelector('#devices tr[data-device=\"real-cam\"]').className"
                                 " === 'health-offline'", timeout=20_000)
            assert pg.inner_text("#summary").endswith("1 offline")
            browser.close()
        assert problems == []
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
        proc.stdout.close()
