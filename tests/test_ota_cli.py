"""The technician tool as a user runs it: keygen, sign, push to a real mosquitto, status."""

from __future__ import annotations

import json
import stat
import threading
import time

import paho.mqtt.client as mqtt

from smartstock.ota.envelope import parse_envelope
from smartstock.ota.release import parse_release
from tests.fixtures.ota import make_model_dir


def retained(broker, topic_filter: str, n: int, timeout: float = 10.0) -> dict[str, bytes]:
    got: dict[str, bytes] = {}
    done = threading.Event()

    def on_message(c, u, msg):
        got[msg.topic] = bytes(msg.payload)
        if len(got) >= n:
            done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = on_message
    c.connect(broker.host, broker.port)
    c.subscribe(topic_filter, qos=1)
    c.loop_start()
    done.wait(timeout)
    c.loop_stop()
    c.disconnect()
    return got


def test_keygen_sign_push_status(cli, tmp_path, broker):
    keys = tmp_path / "keys"
    r = cli("ota", "keygen", "--out", keys, "--key-id", "plant-2026")
    assert r.rc == 0, r.err
    assert stat.S_IMODE((keys / "plant-2026.key").stat().st_mode) == 0o600
    assert (keys / "plant-2026.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    r = cli("ota", "keygen", "--out", keys, "--key-id", "plant-2026")
    assert r.rc == 2 and "refusing to overwrite" in r.err

    model = make_model_dir(tmp_path / "export", release=1)
    env_path = tmp_path / "r2.json"
    r = cli("ota", "sign", model, "--release", "2", "--key", keys / "plant-2026.key", "--target-device", "cam7",
            "--expires", "2d", "--summary", "better scratches", "--out", env_path)
    assert r.rc == 0, r.err
    assert "release 2" in r.out and "plant-2026" in r.out
    env = parse_envelope(env_path.read_bytes())
    rel = parse_release(env.manifest_bytes)
    assert (env.key_id, rel.release, rel.target.devices, rel.summary) == ("plant-2026", 2, ["cam7"], "better scratches")
    assert json.loads(rel.model_manifest_bytes())["release"] == 2  # the model manifest states its shipped release
    assert rel.expires is not None and rel.artifact.name == "defect.onnx"

    r = cli("ota", "push", env_path, "--device", "cam7", "--site", "plant", "--line", "l1", "--url", broker.url,
            "--artifact", model)
    assert r.rc == 0, r.err
    base = "smartstock/plant/l1/cam7"
    got = retained(broker, f"{base}/model/#", 2)
    assert got[f"{base}/model/desired"] == env_path.read_bytes()
    assert got[f"{base}/model/artifact/{rel.artifact.sha256}"] == model.read_bytes()

    # status: whatever the device last retained on model/state
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.publish(f"{base}/model/state", json.dumps({"status": "committed", "installed_version": "2"}), qos=1,
              retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()
    r = cli("ota", "status", "--device", "cam7", "--site", "plant", "--line", "l1", "--url", broker.url)
    assert r.rc == 0, r.err
    assert json.loads(r.out)["installed_version"] == "2"


def test_push_to_group_and_errors(cli, tmp_path, broker):
    keys = tmp_path / "keys"
    assert cli("ota", "keygen", "--out", keys, "--key-id", "k1").rc == 0
    model = make_model_dir(tmp_path / "export", release=1)
    # no target: refused with the fix named
    r = cli("ota", "sign", model, "--release", "2", "--key", keys / "k1.key")
    assert r.rc == 2 and "--target-device" in r.err
    # a key others can read is refused
    (keys / "k1.key").chmod(0o644)
    r = cli("ota", "sign", model, "--release", "2", "--key", keys / "k1.key", "--group", "hall-a")
    assert r.rc == 2 and "chmod 600" in r.err
    (keys / "k1.key").chmod(0o600)
    env_path = tmp_path / "g.json"
    assert cli("ota", "sign", model, "--release", "2", "--key", keys / "k1.key", "--group", "hall-a",
               "--out", env_path).rc == 0
    # the wrong model file for the envelope is caught before anything is published
    other = make_model_dir(tmp_path / "other", release=1, bias=(1.0, -1.0))
    r = cli("ota", "push", env_path, "--group", "hall-a", "--url", broker.url, "--artifact", other)
    assert r.rc == 3 and "does not match" in r.err
    # a model file changed after export is refused at signing
    model.write_bytes(model.read_bytes() + b"\0")
    r = cli("ota", "sign", model, "--release", "3", "--key", keys / "k1.key", "--group", "hall-a")
    assert r.rc == 4 and "truncated or replaced" in r.err
    r = cli("ota", "push", tmp_path / "missing.json", "--group", "hall-a", "--url", broker.url)
    assert r.rc == 3
    r = cli("ota", "push", env_path, "--group", "hall-a", "--url", broker.url, "--artifact", other.with_name("x"))
    assert r.rc == 3 and "cannot read the model file" in r.err
    t0 = time.monotonic()
    r = cli("ota", "status", "--device", "nobody", "--url", broker.url, "--timeout", "1")
    assert r.rc == 1 and "no model state" in r.err and time.monotonic() - t0 < 30
