"""Issue 15: what a probe through the real interfaces broke, each reproduced through the real CLI,
MQTT (a real mosquitto) or HTTP server, and kept fixed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, service_port, stop_service
from tests.fixtures.broker import Probe, free_port
from tests.fixtures.ota import make_model_dir

SECRET = "s3cret-Pw"


def _run(tmp_path: Path, *args: str, config: str = "") -> tuple[subprocess.Popen, Path, Path]:
    """`smartstock run` in a subprocess; returns (process, state dir, log file)."""
    state = tmp_path / "state"
    cfg = tmp_path / "smartstock.toml"
    cfg.write_text(config)
    log = tmp_path / f"service-{time.monotonic_ns()}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMARTSTOCK_", "NOTIFY_", "WATCHDOG_"))}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "smartstock", "run", "--config", str(cfg), "--state-dir", str(state),
                             "--http-port", "0", *args], stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env,
                            cwd=ROOT)
    return proc, state, log


# -- 1. camera credentials ------------------------------------------------------------------------
def test_camera_credentials_never_shown_in_status_logs_or_snapshot_reply(tmp_path, broker):
    model = make_model_dir(tmp_path / "model")
    uri = f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/stream1?token={SECRET}"
    probe = Probe(broker.port, "smartstock/+/+/cam1/response/#")
    proc, state, log = _run(tmp_path, "--source", uri, "--model", str(model), "--device-id", "cam1",
                            "--mqtt", broker.url, "--log-level", "DEBUG",
                            config="[source]\nstall_timeout_s = 1.0\nbackoff_max_s = 1.0\n")
    try:
        port = service_port(state, proc, log)
        deadline = time.monotonic() + 30
        while True:  # the watchdog has tried (and logged) at least one reopen
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=10) as r:
                status = json.loads(r.read())
            if status["camera"]["last_error"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status["camera"]["source"], status["camera"]  # the source is still named...
        assert "127.0.0.1" in status["camera"]["source"]
        assert SECRET not in json.dumps(status)               # ...without its credentials
        probe.publish("smartstock/plant/line1/cam1/cmd/snapshot", b'{"request_id": "s1"}')
        reply = probe.wait_for(lambda m: m.topic.endswith("/response/snapshot"), timeout=30)[0]
        assert json.loads(reply.payload)["ok"] is True
        assert SECRET not in reply.payload.decode()
    finally:
        stop_service(proc)
        probe.close()
    text = log.read_text(errors="replace")
    assert "127.0.0.1" in text and "reconnecting" in text, text[-3000:]  # the watchdog did log the source
    assert SECRET not in text, [line for line in text.splitlines() if SECRET in line][:5]


# -- 4. envelope bombs ----------------------------------------------------------------------------
BOMBS = [b"[" * 200_000, b'{"a":' * 100_000, b'{"v": ' + b"9" * 5000 + b"}"]


def test_envelope_bombs_are_refused_as_malformed_and_do_not_hold_up_a_real_update(tmp_path, broker):
    from tests.test_ota_service import Device, StateWatcher

    dev = Device(tmp_path, broker, "cam1", 300)
    watch = StateWatcher(broker, dev.base)
    proc = dev.start("--fps", "30", "--loop")
    probe = Probe(broker.port, f"{dev.base}/model/state")
    try:
        watch.wait(lambda s: s["status"] == "serving", 90)
        deadline = time.monotonic() + 60
        while not any(s.get("error") == "malformed" for s in watch.states):  # until the agent listens
            assert time.monotonic() < deadline, f"no bomb was refused as malformed: {dev.log()}"
            probe.publish(f"{dev.base}/model/desired", BOMBS[0])
            time.sleep(0.5)
        for i in range(60):
            probe.client.publish(f"{dev.base}/model/desired", BOMBS[i % 3], qos=1)
        dev.push(dev.model2, 2)
        watch.wait(lambda s: s["status"] == "committed" and s["installed_version"] == "2", 120)
        assert proc.poll() is None, dev.log()
    finally:
        stop_service(proc)
        watch.close()
        probe.close()
    refused = [r[0] for r in dev.db("SELECT detail FROM model_history WHERE status = 'refused'")]
    assert refused and all(d.startswith("malformed: ") for d in refused), refused
    log = (dev.root / "service.log").read_text(errors="replace")
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]


# -- 5. staging never follows a planted symlink ---------------------------------------------------
def test_artifact_over_mqtt_never_writes_through_a_symlink_planted_in_staging(tmp_path, broker):
    import hashlib

    from tests.test_ota_service import Device, StateWatcher

    dev = Device(tmp_path, broker, "cam1", 300)
    sha = hashlib.sha256(dev.model2.read_bytes()).hexdigest()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    staging = dev.state / "models" / "staging"
    staging.mkdir(parents=True)
    (staging / f"{sha}.part").symlink_to(victim)
    watch = StateWatcher(broker, dev.base)
    proc = dev.start("--fps", "30", "--loop")
    try:
        watch.wait(lambda s: s["status"] == "serving", 90)
        dev.push(dev.model2, 2)
        watch.wait(lambda s: s["status"] == "committed" and s["installed_version"] == "2", 120)
    finally:
        stop_service(proc)
        watch.close()
    assert victim.read_bytes() == b"precious\n"  # not overwritten with the model
    assert not (staging / f"{sha}.part").is_symlink()


# -- 7. MQTT 5 response topics only under the device's own base or the reply prefix ---------------
def test_response_topic_outside_own_base_or_reply_prefix_is_not_honoured(store, broker):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edge.sync_worker import SyncService
    from smartstock.config import Config

    base = "smartstock/plant/line1/dev1"
    cfg = Config.model_validate({"device": {"device_id": "dev1"},
                                 "mqtt": {"enabled": True, "host": "127.0.0.1", "port": broker.port,
                                          "ha_discovery": False, "reply_prefix": "replies/tech"}})
    svc = SyncService(cfg.mqtt, cfg.device, store)
    svc.start()
    assert svc.client.wait_subscribed(10)
    probe = Probe(broker.port, "#")
    try:
        def ask(rid: str, response_topic: str, cmd: str = "cmd/ping") -> None:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = response_topic
            props.CorrelationData = rid.encode()
            body = {"request_id": rid, "records": []} if cmd == "sales/in" else {"request_id": rid}
            probe.publish(f"{base}/{cmd}", json.dumps(body), properties=props)

        def answered_on(rid: str) -> str:
            hit = probe.wait_for(lambda m: m.topic not in (f"{base}/cmd/ping", f"{base}/sales/in")
                                 and b'"request_id"' in m.payload
                                 and json.loads(m.payload).get("request_id") == rid)[0]
            assert hit.properties.CorrelationData == rid.encode()
            return hit.topic

        hostile = {"r1": "smartstock/plant/line1/dev2/cmd/set-threshold",   # another device's command
                   "r2": "homeassistant/sensor/dev1_fake/config",           # forged discovery
                   "r3": f"{base}/model/desired",                           # under the base but not a reply
                   "r4": "replies/technician-evil"}                         # prefix is a path, not a string
        for rid, topic in hostile.items():
            ask(rid, topic)
            assert answered_on(rid) == f"{base}/response/ping", rid
        ask("ok1", f"{base}/response/ping/tablet-7")
        assert answered_on("ok1") == f"{base}/response/ping/tablet-7"
        ask("ok2", "replies/tech/anna")
        assert answered_on("ok2") == "replies/tech/anna"
        ask("s1", "homeassistant/sensor/x/config", cmd="sales/in")
        assert answered_on("s1") == f"{base}/response/sales"
        assert not [m.topic for m in probe.messages if m.topic in hostile.values()]
    finally:
        probe.close()
        svc.stop()


# -- 8a. keyring files: symlinks and group/world-writable keys are refused ------------------------
def test_keyring_refuses_symlinked_and_writable_key_files(tmp_path, broker):
    from tests.test_ota_service import Device, StateWatcher

    dev = Device(tmp_path, broker, "cam1", 300)
    pub = dev.root / "keyring" / "tech.pub"
    elsewhere = dev.root / "tech-elsewhere.pub"
    elsewhere.write_bytes(pub.read_bytes())
    elsewhere.chmod(0o644)
    pub.unlink()
    pub.symlink_to(elsewhere)
    watch = StateWatcher(broker, dev.base)
    proc = dev.start("--fps", "30", "--loop")
    try:
        watch.wait(lambda s: s["status"] == "serving", 90)
        dev.push(dev.model2, 2)
        linked = watch.wait(lambda s: s["status"] == "refused", 60)
        assert linked["error"] == "unsafe_key" and "symbolic link" in linked["detail"], linked
        pub.unlink()
        pub.write_bytes(elsewhere.read_bytes())
        pub.chmod(0o664)
        n = len(watch.states)
        dev.push(dev.model2, 3)
        writable = watch.wait(lambda s: s["status"] == "refused" and s is not linked and watch.states.index(s) >= n, 60)
        assert writable["error"] == "unsafe_key" and "writable by group" in writable["detail"], writable
        pub.chmod(0o644)
        dev.push(dev.model2, 4)
        watch.wait(lambda s: s["status"] == "committed" and s["installed_version"] == "4", 120)
    finally:
        stop_service(proc)
        watch.close()
    assert [r[0] for r in dev.db("SELECT release FROM model_history WHERE status = 'committed'")] == [4]


# -- 8b. HTTP: half-sent requests time out, connections are capped --------------------------------
def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_http_half_sent_requests_neither_pile_up_threads_nor_block_the_server(tmp_path):
    import socket
    import urllib.error

    from edge.samples import write_parts

    model = make_model_dir(tmp_path / "model")
    parts = tmp_path / "parts"
    write_parts(parts, 5, size=64, defect_rate=0.0, seed=1)
    proc, state, log = _run(tmp_path, "--source", str(parts), "--model", str(model), "--loop", "--fps", "2",
                            config="[http]\nport = 0\nread_timeout_s = 1.0\nmax_connections = 8\n")
    socks: list[socket.socket] = []
    try:
        port = service_port(state, proc, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10):
            pass
        before = _threads(proc.pid)
        for _ in range(60):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")  # never the blank line that ends it
            socks.append(s)
        time.sleep(0.5)
        assert _threads(proc.pid) <= before + 8 + 4, (before, _threads(proc.pid))
        for s in socks:  # every one is closed by the server: at once beyond the cap, else after the read timeout
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
        deadline = time.monotonic() + 30
        while True:  # the server serves again once the slow clients are gone
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
                    assert r.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        for s in socks:
            s.close()
        stop_service(proc)


# -- 9. a trial model runs in shadow: the trusted model's verdicts are booked ----------------------
def test_all_defect_candidate_in_trial_books_no_verdict_and_is_rolled_back(tmp_path, broker):
    from tests.test_ota_service import Device, StateWatcher

    dev = Device(tmp_path, broker, "cam1", 300)
    bad = make_model_dir(dev.root / "all-defect", release=2, bias=(-10.0, 10.0))  # says "defect" for every part
    watch = StateWatcher(broker, dev.base)
    proc = dev.start("--fps", "30", "--loop")
    try:
        watch.wait(lambda s: s["status"] == "serving", 90)
        dev.push(bad, 2)
        trial = watch.wait(lambda s: s["status"] == "trial", 60)
        assert "in shadow" in trial["detail"], trial
        back = watch.wait(lambda s: s["status"] == "rolled_back", 120)
        assert back["error"] == "trial_failed", back
        n = dev.db("SELECT COUNT(*) FROM inspections")[0][0]
        deadline = time.monotonic() + 30
        while dev.db("SELECT COUNT(*) FROM inspections")[0][0] < n + 20 and time.monotonic() < deadline:
            time.sleep(0.2)  # a few parts after the rollback too
    finally:
        stop_service(proc)
        watch.close()
    rows = dev.db("SELECT model_release, is_defect FROM inspections")
    assert {r[0] for r in rows} == {1}, "a verdict of the candidate was booked"
    defects = sum(r[1] for r in rows)
    assert defects <= len(rows) // 10 + 1, f"{defects} of {len(rows)} parts booked as defects (1 in 10 is)"


# -- 3. re-push after a bad retained artifact installs --------------------------------------------
def test_repush_after_a_junk_retained_artifact_installs(tmp_path, broker):
    import paho.mqtt.client as mqtt

    from smartstock.ota.sign import sign_model
    from tests.test_ota_service import Device, StateWatcher

    dev = Device(tmp_path, broker, "cam1", 300)
    env, rel = sign_model(dev.model2, release=2, key=dev.key, key_id="tech", devices=["cam1"])
    envelope = tmp_path / "r2.envelope.json"
    envelope.write_bytes(env.to_json())
    watch = StateWatcher(broker, dev.base)
    proc = dev.start("--fps", "30", "--loop")
    try:
        watch.wait(lambda s: s["status"] == "serving", 90)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)  # someone on the broker puts junk on the artifact topic
        c.connect(broker.host, broker.port)
        c.loop_start()
        c.publish(f"{dev.base}/model/artifact/{rel.artifact.sha256}", b"junk" * 100, qos=1, retain=True).wait_for_publish(10)
        c.publish(f"{dev.base}/model/desired", envelope.read_bytes(), qos=1, retain=True).wait_for_publish(10)
        c.loop_stop()
        c.disconnect()
        junk = watch.wait(lambda s: s["status"] == "refused", 60)
        assert junk["error"] in ("hash_mismatch", "truncated", "oversized"), junk
        n = len(watch.states)
        push = subprocess.run([sys.executable, "-m", "smartstock", "ota", "push", str(envelope), "--device", "cam1",
                               "--artifact", str(dev.model2), "--url", broker.url, "--site", "plant", "--line", "l1"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert push.returncode == 0, push.stderr
        done = watch.wait(lambda s: watch.states.index(s) >= n and s["status"] in ("committed", "refused"), 120)
        assert done["status"] == "committed" and done["installed_version"] == "2", done
    finally:
        stop_service(proc)
        watch.close()


# -- 6. MQTT 5 Maximum Packet Size: oversized messages never reach the device ----------------------
def test_oversized_command_is_dropped_by_the_broker_before_it_reaches_the_device(tmp_path, broker):
    from edge.samples import write_parts

    model = make_model_dir(tmp_path / "model")
    parts = tmp_path / "parts"
    write_parts(parts, 5, size=64, defect_rate=0.0, seed=1)
    base = "smartstock/plant/line1/cam1"
    probe = Probe(broker.port, f"{base}/response/#")
    proc, state, log = _run(tmp_path, "--source", str(parts), "--model", str(model), "--loop", "--fps", "2",
                            "--device-id", "cam1", "--mqtt", broker.url, config="[mqtt]\nmax_payload_kb = 64\n")
    try:
        service_port(state, proc, log)
        deadline = time.monotonic() + 60
        while not probe.messages:  # the device answers commands
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-3000:]
            probe.publish(f"{base}/cmd/ping", b'{"request_id": "hello"}')
            time.sleep(0.5)
        big = b'{"request_id": "big", "args": {"x": "' + b"x" * (20 * 1024 * 1024) + b'"}}'
        probe.publish(f"{base}/cmd/ping", big)
        probe.publish(f"{base}/cmd/ping", b'{"request_id": "after"}')
        probe.wait_for(lambda m: json.loads(m.payload).get("request_id") == "after", timeout=60)
        refusals = [json.loads(m.payload)["error"] for m in probe.messages if b"max_payload_kb" in m.payload]
        assert not refusals, f"the 20 MB command reached the device, which read it and answered: {refusals}"
    finally:
        stop_service(proc)
        probe.close()


# -- 14. CSV injection: formula-looking SKUs are escaped on export ----------------------------------
def test_forecast_csv_export_escapes_formula_looking_skus(cli, tmp_path):
    import csv
    import datetime as dt

    skus = ['=HYPERLINK("evil.example";"click")', "@SUM(A1)", "-2*3", "PCB-100"]  # + is no SKU character
    lines = ["sku,date,quantity"]
    for sku in skus:
        quoted = '"' + sku.replace('"', '""') + '"'
        lines += [f"{quoted},{dt.date(2024, 1, 1) + dt.timedelta(days=d)},{5 + d % 3}" for d in range(120)]
    src = tmp_path / "sales.csv"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "fc.csv"
    r = cli("forecast", src, "--horizon", "2", "--freq", "W", "--out", out, "--jobs", "1")
    assert r.rc == 0, r.err
    written = {row["sku"] for row in csv.DictReader(out.open(encoding="utf-8"))}
    assert written == {"'" + s for s in skus[:3]} | {"PCB-100"}, written


# -- 13. first-time user: what the CLI says about surprising input ----------------------------------
def test_sku_set_on_an_unknown_sku_says_it_creates_it(cli):
    r = cli("sku", "set", "PCB-1OO", "--annual-demand", "1200")  # a typo: letter O for zero
    assert r.rc == 0 and "new SKU" in r.err and "sku list" in r.err, r.err
    again = cli("sku", "set", "PCB-1OO", "--annual-demand", "1300")
    assert again.rc == 0 and "new SKU" not in again.err, again.err
    close = cli("sku", "set", "pcb-1oo", "--annual-demand", "1")
    assert "Did you mean PCB-1OO?" in close.err, close.err


def test_sales_import_of_a_header_only_csv_warns(cli, tmp_path):
    f = tmp_path / "empty.csv"
    f.write_text("sku,date,quantity\n")
    r = cli("sales", "import", f)
    assert r.rc == 0 and "header but no data rows" in r.err, (r.rc, r.err)


def test_forecast_on_a_bad_file_lists_one_error_per_line(cli, tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("sku,date,quantity\nA,2024-01-01,1\nA,2024-01-02,lots\nA,2024-01-03,-4\n")
    r = cli("forecast", f, "--horizon", "2", "--out", tmp_path / "fc.csv")
    assert r.rc == 3, r.err
    lines = r.err.splitlines()
    assert any(line.strip() == "line 3: quantity 'lots' is not a number" for line in lines), r.err
    assert any(line.strip().startswith("line 4: quantity '-4' is negative") for line in lines), r.err


def test_ota_sign_into_a_missing_folder_is_an_error_not_a_traceback(cli, tmp_path):
    assert cli("ota", "keygen", "--out", tmp_path / "keys", "--key-id", "tech").rc == 0
    model = make_model_dir(tmp_path / "model")
    r = cli("ota", "sign", model, "--release", "2", "--key", tmp_path / "keys" / "tech.key", "--any-device",
            "--out", tmp_path / "missing" / "x.json")
    assert r.rc == 2 and "Traceback" not in r.err and "mkdir -p" in r.err, r.err


# -- 10. OTA for a first-time technician: no keyring said, push --wait, status exit codes ----------
def _ota_cli(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTSTOCK_")}
    return subprocess.run([sys.executable, "-m", "smartstock", "ota", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)


def test_push_to_a_device_without_keyring_says_updates_are_disabled(tmp_path, broker):
    from smartstock.ota.keys import generate_keypair, load_private_key
    from smartstock.ota.sign import sign_model

    model = make_model_dir(tmp_path / "model")
    parts = tmp_path / "parts"
    parts.mkdir()
    from edge.samples import write_parts

    write_parts(parts, 5, size=64, defect_rate=0.0, seed=1)
    priv, _ = generate_keypair(tmp_path / "keys", "tech")
    m2 = make_model_dir(tmp_path / "r2", release=2, bias=(10.5, -10.5))
    env, _ = sign_model(m2, release=2, key=load_private_key(priv), key_id="tech", devices=["cam1"])
    envelope = tmp_path / "r2.envelope.json"
    envelope.write_bytes(env.to_json())
    watch_probe = Probe(broker.port, "smartstock/plant/line1/cam1/model/state")
    proc, state, log = _run(tmp_path, "--source", str(parts), "--model", str(model), "--loop", "--fps", "2",
                            "--device-id", "cam1", "--mqtt", broker.url)
    try:
        hit = watch_probe.wait_for(lambda m: json.loads(m.payload).get("status") == "disabled", timeout=90)[0]
        assert "no keyring" in json.loads(hit.payload)["detail"]
        push = _ota_cli("push", envelope, "--device", "cam1", "--artifact", m2, "--url", broker.url)
        assert push.returncode == 7 and "no keyring" in push.stderr, (push.returncode, push.stdout, push.stderr)
        status = _ota_cli("status", "--device", "cam1", "--url", broker.url)
        assert status.returncode == 7 and json.loads(status.stdout)["status"] == "disabled", status.stderr
    finally:
        stop_service(proc)
        watch_probe.close()


def test_push_wait_follows_the_update_and_status_exit_codes(tmp_path, broker):
    from smartstock.ota.sign import sign_model
    from tests.test_ota_service import Device

    dev = Device(tmp_path, broker, "cam1", 300)
    bad = make_model_dir(dev.root / "all-defect", release=2, bias=(-10.0, 10.0))
    where = ["--device", "cam1", "--url", broker.url, "--site", "plant", "--line", "l1"]

    def push(model: Path, release: int) -> subprocess.CompletedProcess:
        env, _ = sign_model(model, release=release, key=dev.key, key_id="tech", devices=["cam1"])
        f = tmp_path / f"r{release}.envelope.json"
        f.write_bytes(env.to_json())
        return _ota_cli("push", f, "--artifact", model / "defect.onnx" if model.is_dir() else model, "--wait",
                        "--wait-timeout", "120", *where)

    proc = dev.start("--fps", "30", "--loop")
    try:
        deadline = time.monotonic() + 90
        while _ota_cli("status", "--timeout", "2", *where).returncode != 0:  # serving, reported
            assert time.monotonic() < deadline and proc.poll() is None, dev.log()
        same = push(dev.model1, 5)  # the artifact that already serves, under a new release number
        assert same.returncode == 0 and "up_to_date" in same.stdout, (same.stdout, same.stderr)
        st = json.loads(_ota_cli("status", *where).stdout)
        assert st["installed_version"] == st["latest_version"] == "1", st
        assert st["kind"] == "defect-classifier" and st["title"] == "SmartStock defect model", st
        good = push(dev.model2, 6)
        assert good.returncode == 0 and "committed" in good.stdout, (good.stdout, good.stderr)
        assert _ota_cli("status", *where).returncode == 0
        rolled = push(bad, 7)
        assert rolled.returncode == 7 and "rolled_back" in rolled.stdout, (rolled.stdout, rolled.stderr)
        after = _ota_cli("status", *where)
        assert after.returncode == 7 and json.loads(after.stdout)["installed_version"] == "6", after.stderr
    finally:
        stop_service(proc)


# -- 12. make demo's closing lines: real paths and a command that runs without an activated venv ---
@pytest.mark.slow
def test_demo_names_the_report_where_it_is_and_a_runnable_command(cli, tmp_path):
    env_path = ":".join(p for p in os.environ.get("PATH", "").split(":") if not (Path(p) / "smartstock").exists())
    r = cli("demo", "--out", tmp_path / "demo-output", PATH=env_path)
    assert r.rc == 0, r.err[-3000:]
    listed = r.out.split("Output in", 1)[1].splitlines()[0]
    assert "report/index.html" in listed and (tmp_path / "demo-output" / "report" / "index.html").is_file(), listed
    tries = [line for line in r.out.splitlines() if line.startswith("Try: ")]
    assert tries and not tries[0].startswith("Try: smartstock "), tries  # `smartstock` is not on this PATH
    argv = tries[0].removeprefix("Try: ").split()
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "PATH": env_path})
    assert run.returncode == 0, run.stderr


def test_forecast_over_many_skus_shows_progress_on_a_terminal_only(tmp_path):
    import datetime as dt
    import pty

    lines = ["sku,date,quantity"]
    for k in range(12):
        lines += [f"SKU-{k},{dt.date(2024, 1, 1) + dt.timedelta(days=d)},{3 + (d + k) % 4}" for d in range(60)]
    src = tmp_path / "sales.csv"
    src.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTSTOCK_")}

    def run(on_tty: bool) -> str:
        cmd = [sys.executable, "-m", "smartstock", "forecast", str(src), "--horizon", "2", "--freq", "W",
               "--model", "naive", "--jobs", "1", "--out", str(tmp_path / "fc.csv")]
        if not on_tty:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
            assert p.returncode == 0, p.stderr
            return p.stderr
        master, slave = pty.openpty()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave, env=env, cwd=tmp_path)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(master)
        assert p.wait(300) == 0, b"".join(chunks)
        return b"".join(chunks).decode(errors="replace")

    assert "\rforecast: series 12/12" in run(on_tty=True)  # one line, rewritten in place
    assert "\r" not in run(on_tty=False)  # a pipe or a log file gets log lines only


def test_sales_bombs_over_mqtt_are_answered_not_crashed_on(store, broker):
    from edge.sync_worker import SyncService
    from smartstock.config import Config

    base = "smartstock/plant/line1/dev1"
    cfg = Config.model_validate({"device": {"device_id": "dev1"},
                                 "mqtt": {"enabled": True, "host": "127.0.0.1", "port": broker.port,
                                          "ha_discovery": False}})
    svc = SyncService(cfg.mqtt, cfg.device, store)
    svc.start()
    assert svc.client.wait_subscribed(10)
    probe = Probe(broker.port, f"{base}/response/sales")
    try:
        for n, bomb in enumerate([b'{"id": "a", "quantity": ' + b"9" * 5000 + b"}", b"[" * 100_000], 1):
            probe.publish(f"{base}/sales/in", bomb)
            reply = json.loads(probe.wait_for(lambda m: True, count=n, timeout=20)[-1].payload)
            assert reply["ok"] is False and ("JSON" in reply["error"] or "nested" in reply["error"]), reply
    finally:
        probe.close()
        svc.stop()
