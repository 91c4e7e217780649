"""Access per device (issue 17): a real mosquitto running the ACL `smartstock mqtt acl` writes.

A device publishes only under its own base topic: under another device's topics the broker refuses
(MQTT 5: PUBACK "Not authorized"; 3.1.1: acknowledged and dropped, so a subscriber never gets it).
Only technicians write commands and OTA releases; dashboards read. Then the real `smartstock run`
under that ACL, with its own credentials: its state, events and discovery arrive, a technician's
command is answered, a dashboard's OTA push is refused and a technician's group release is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from smartstock.sync.brokerconf import Bridge, Fleet, acl_text, bridge_text
from smartstock.sync.discovery import discovery_messages
from smartstock.sync.topics import Topics
from tests.conftest import ROOT, stop_service
from tests.fixtures.broker import Probe, acl_file, passwords

FLEET = Fleet(devices=("dev-a", "dev-b"), technicians=("tech-alice",), homeassistant=("ha",), dashboards=("dash",),
              sales=("erp",))
USERS = ("dev-a", "dev-b", "tech-alice", "ha", "dash", "erp")
# deploy/mosquitto/ holds the generator's output for these example names; the test below keeps them equal
EXAMPLE = Fleet(devices=("line1-cam1", "line1-cam2"), technicians=("tech-alice", "tech-bob"),
                homeassistant=("homeassistant",), dashboards=("grafana",), sales=("erp",),
                bridges={"bridge-site1": "site1"})
EXAMPLE_BRIDGE = Bridge(site="site1", address="plant-broker.example:8883", remote_user="bridge-site1")
DEPLOY = ROOT / "deploy" / "mosquitto"


def password(user: str) -> str:
    return f"pw-{user}-0123"


@pytest.fixture
def acl_broker(tmp_path: Path, broker_factory):
    auth = tmp_path / "auth"
    conf = (f"password_file {passwords(auth, {u: password(u) for u in USERS})}\n"
            f"acl_file {acl_file(auth, acl_text(FLEET))}")
    return broker_factory("acl", allow_anonymous=False, extra_conf=conf)


class Account:
    """A paho client logged in as `user`; `publish` returns the PUBACK reason code (MQTT 5) or None (3.1.1)."""

    def __init__(self, broker, user: str, protocol: str = "5") -> None:
        self.acks: dict[int, object] = {}
        self.got: list[mqtt.MQTTMessage] = []
        self._cv = threading.Condition()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{protocol}",
                             protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311)
        self.v5 = protocol == "5"
        self.c.username_pw_set(user, password(user))
        self.c.on_publish = lambda c, u, mid, rc, p: self.acks.__setitem__(mid, rc)
        self.c.on_message = self._on
        connected = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: (connected.set() if not rc.is_failure else None)
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert connected.wait(10), f"{user} could not log in"

    def _on(self, _c, _u, msg) -> None:
        with self._cv:
            self.got.append(msg)
            self._cv.notify_all()

    def subscribe(self, *filters: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda c, u, mid, rcs, p: done.set()
        self.c.subscribe([(f, 1) for f in filters])
        assert done.wait(10)

    def publish(self, topic: str, payload: bytes | str = b"x", retain: bool = False):
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published(), f"no PUBACK for {topic}"
        return str(self.acks[info.mid]) if self.v5 else None

    def wait_topic(self, topic: str, timeout: float = 10.0) -> mqtt.MQTTMessage:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not any(m.topic == topic for m in self.got):
                left = deadline - time.monotonic()
                assert left > 0, f"{topic} never arrived; got {sorted({m.topic for m in self.got})}"
                self._cv.wait(left)
            return next(m for m in self.got if m.topic == topic)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def device_publishes(device_id: str) -> list[str]:
    """Every topic the device publishes, from the product's own topic and discovery code."""
    t = Topics("smartstock", "plant", "line1", device_id)
    return [t.status, t.state, t.alerts, t.sync_stats, t.model_state, t.inspection_events, t.inventory("PCB-1"),
            t.response("ping"), t.response("sales")] + [topic for topic, _ in discovery_messages(t, skus=["PCB-1"])]


def test_deploy_files_are_the_generators_output():
    """deploy/mosquitto/ is written by `smartstock mqtt acl|bridge`: the shipped example cannot drift from
    the topics the device really uses."""
    assert (DEPLOY / "acl.conf").read_text() == acl_text(EXAMPLE)
    assert (DEPLOY / "site-bridge.conf").read_text() == bridge_text(Fleet(), EXAMPLE_BRIDGE)


def test_cli_writes_the_example_acl(tmp_path):
    out = tmp_path / "acl"
    ids = tmp_path / "devices.txt"
    ids.write_text("# line 1\nline1-cam1\nline1-cam2  # spare\n\n")
    cmd = [sys.executable, "-m", "smartstock", "mqtt", "acl", "--devices", str(ids), "--technician", "tech-alice",
           "--technician", "tech-bob", "--homeassistant", "homeassistant", "--dashboard", "grafana", "--sales", "erp",
           "--bridge", "bridge-site1=site1", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTSTOCK_")}
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert out.read_text() == acl_text(EXAMPLE) and (out.stat().st_mode & 0o077) in (0, 0o040)
    bad = subprocess.run(cmd[:5] + ["--device", "dash", "--dashboard", "dash"], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=60)
    assert bad.returncode == 2 and "dashboard 'dash' is also a device" in bad.stderr
    bridge = subprocess.run([sys.executable, "-m", "smartstock", "mqtt", "bridge", "--site", "site1"], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=60)
    assert bridge.returncode == 0 and bridge.stdout == (DEPLOY / "site-bridge.conf").read_text(), bridge.stderr


def test_every_topic_of_the_topic_tree_is_in_the_acl():
    """A topic added to `Topics` must be placed in `brokerconf.device_topics` (written or read by the
    device), or the ACL would refuse it on every deployment."""
    import inspect

    from smartstock.sync.brokerconf import device_topics

    t = Topics("smartstock", "plant", "line1", "dev-a")
    write, read = device_topics(FLEET, "dev-a")
    names = [n for n, v in inspect.getmembers(Topics) if not n.startswith("_") and n not in ("base", "from_config",
             "reply_topic", "cmd_name", "prefix", "site", "line", "device_id", "reply_prefix")]
    assert names, "no topic names found on Topics"
    for name in names:
        attr = getattr(t, name)
        topic = attr("x1") if callable(attr) else attr
        topic = topic.replace("/+", "/x1")  # cmd_filter: any one command
        assert any(mqtt.topic_matches_sub(f, topic) for f in write + read), f"Topics.{name} ({topic}) is not in the ACL"


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_device_cannot_publish_under_another_devices_topics(acl_broker, protocol):
    dash = Probe(acl_broker.port, ["smartstock/#", "homeassistant/#"], username="dash", password=password("dash"))
    dev = Account(acl_broker, "dev-a", protocol)
    try:
        for own, other in zip(device_publishes("dev-a"), device_publishes("dev-b")):
            rc_other = dev.publish(other, b"spoofed")
            rc_own = dev.publish(own, b"genuine")
            if protocol == "5":
                assert (rc_other, rc_own) == ("Not authorized", "Success"), (other, own)
        # a device writes neither commands nor releases, not even its own
        base = "smartstock/plant/line1/dev-a"
        for t in (f"{base}/cmd/ping", f"{base}/model/desired", f"{base}/sales/in", "smartstock/groups/g1/model/desired"):
            rc = dev.publish(t, b"spoofed")
            assert protocol != "5" or rc == "Not authorized", t
        dev.publish(f"{base}/state", b"last")  # sent after everything above: once it arrives, all did
        dash.wait_for(lambda m: m.topic == f"{base}/state" and m.payload == b"last")
        spoofed = sorted({m.topic for m in dash.messages if m.payload == b"spoofed"})
        assert spoofed == [], f"the broker let these through: {spoofed}"
        genuine = {m.topic for m in dash.messages if m.payload == b"genuine"}
        assert genuine == set(device_publishes("dev-a"))
    finally:
        dev.close()
        dash.close()


def test_only_technicians_write_commands_and_releases(acl_broker):
    base_a, base_b = "smartstock/plant/line1/dev-a", "smartstock/plant/line2/dev-b"
    dev = Account(acl_broker, "dev-a")
    dev.subscribe(f"{base_a}/cmd/+", f"{base_a}/model/desired", f"{base_a}/sales/in", "smartstock/groups/+/model/desired",
                  "homeassistant/status", f"{base_b}/cmd/+")  # the last: another device's, nothing is delivered
    accounts = {u: Account(acl_broker, u) for u in ("tech-alice", "ha", "dash", "erp", "dev-b")}
    try:
        expect = {  # (user, topic) -> allowed
            ("tech-alice", f"{base_a}/cmd/ping"): True, ("tech-alice", f"{base_a}/model/desired"): True,
            ("tech-alice", "smartstock/groups/g1/model/desired"): True, ("tech-alice", f"{base_a}/sales/in"): True,
            ("ha", f"{base_a}/cmd/sync-now"): True, ("ha", f"{base_a}/cmd/set-threshold"): False,
            ("ha", f"{base_a}/model/desired"): False, ("ha", "homeassistant/status"): True,
            ("dash", "homeassistant/status"): False,
            ("erp", f"{base_a}/sales/in"): True, ("erp", f"{base_a}/cmd/ping"): False,
            ("dash", f"{base_a}/cmd/ping"): False, ("dash", f"{base_a}/model/desired"): False,
            ("dash", "smartstock/groups/g1/model/desired"): False, ("dash", f"{base_a}/sales/in"): False,
            ("dev-b", f"{base_a}/cmd/ping"): False,
        }
        for (user, topic), allowed in expect.items():
            rc = accounts[user].publish(topic, f"from {user}")
            assert rc == ("Success" if allowed else "Not authorized"), (user, topic, rc)
        accounts["tech-alice"].publish(f"{base_b}/cmd/ping", b"for b")
        accounts["tech-alice"].publish(f"{base_a}/cmd/last", b"last")
        dev.wait_topic(f"{base_a}/cmd/last")
        got = {(m.topic, m.payload.decode()) for m in dev.got}
        want = {(t, f"from {u}") for (u, t), ok in expect.items() if ok} | {(f"{base_a}/cmd/last", "last")}
        assert got == want, f"unexpected: {got - want}; missing: {want - got}"
    finally:
        for a in [dev, *accounts.values()]:
            a.close()


def test_anonymous_clients_get_nothing(acl_broker):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    answer: list = []
    done = threading.Event()
    c.on_connect = lambda c_, u, f, rc, p: (answer.append(str(rc)), done.set())
    c.connect(acl_broker.host, acl_broker.port)
    c.loop_start()
    try:
        assert done.wait(10) and answer == ["Not authorized"]
    finally:
        c.loop_stop()
    assert "ACL" not in acl_broker.log.read_text(), "mosquitto found something to warn about in the ACL"


# -- the real device under the ACL -------------------------------------------------------------------
def _cli(*args: str, user: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """A technician's (or dashboard's) smartstock command; the password comes from the environment, as
    the README says (never on the command line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTSTOCK_")}
    env["SMARTSTOCK_MQTT_PASSWORD"] = password(user)
    return subprocess.run([sys.executable, "-m", "smartstock", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_real_service_works_under_the_acl(tmp_path, acl_broker):
    import cv2

    from smartstock.ota.keys import generate_keypair, load_private_key
    from smartstock.ota.sign import sign_model
    from tests.fixtures.ota import frames, make_model_dir

    base = "smartstock/plant/line1/dev-a"
    keyring = tmp_path / "keyring"
    keyring.mkdir()
    priv, pub = generate_keypair(tmp_path / "keys", "tech")
    (keyring / "tech.pub").write_bytes(pub.read_bytes())
    model1 = make_model_dir(tmp_path / "shipped", release=1)
    model2 = make_model_dir(tmp_path / "r2", release=2, bias=(10.5, -10.5))
    src = tmp_path / "frames"
    src.mkdir()
    for i, f in enumerate(frames(60, bright=False)):
        cv2.imwrite(str(src / f"{i:05d}.png"), f if i % 10 else 255 - f)
    secret = tmp_path / "mqtt-password"
    secret.write_text(password("dev-a") + "\n")
    secret.chmod(0o600)
    cfg = tmp_path / "smartstock.toml"
    cfg.write_text(f"""
[device]
device_id = "dev-a"
groups = ["g1"]
[vision]
model = "{model1}"
[inspection]
snapshots = false
queue_size = 1024
[ota]
keyring_dir = "{keyring}"
trial_frames = 30
trial_max_s = 60
[mqtt]
enabled = true
host = "127.0.0.1"
port = {acl_broker.port}
username = "dev-a"
password_file = "{secret}"
stats_interval_s = 1
reconnect_max_s = 2
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTSTOCK_")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    log = tmp_path / "service.log"
    dash = Probe(acl_broker.port, ["smartstock/#", "homeassistant/#"], username="dash", password=password("dash"))
    proc = subprocess.Popen([sys.executable, "-m", "smartstock", "run", "--config", str(cfg), "--source", str(src),
                             "--loop", "--fps", "30", "--state-dir", str(tmp_path / "state"), "--http-port", "0"],
                            cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    try:
        dash.wait_for(lambda m: m.topic == f"{base}/status" and m.payload == b"online", timeout=90)
        for suffix in ("state", "events/inspection", "sync"):
            dash.wait_for(lambda m, s=suffix: m.topic == f"{base}/{s}", timeout=30)
        dash.wait_for(lambda m: m.topic.startswith("homeassistant/sensor/smartstock_dev_a_"), timeout=30)

        url = f"mqtt://{{}}@127.0.0.1:{acl_broker.port}"
        ping = _cli("mqtt", "cmd", "ping", "--url", url.format("tech-alice"), "--device-id", "dev-a", user="tech-alice")
        assert ping.returncode == 0 and json.loads(ping.stdout)["ok"], ping.stderr
        denied = _cli("mqtt", "cmd", "ping", "--url", url.format("dash"), "--device-id", "dev-a", "--wait", "20",
                      user="dash")
        assert denied.returncode == 8 and "refused to publish" in denied.stderr, denied.stderr

        envelope, rel = sign_model(model2, release=2, key=load_private_key(priv), key_id="tech", groups=["g1"])
        env_file = tmp_path / "r2.envelope.json"
        env_file.write_bytes(envelope.to_json())
        push = ["ota", "push", str(env_file), "--group", "g1", "--artifact", str(model2)]
        stranger = _cli(*push, "--url", url.format("nobody"), user="nobody")  # no such account
        assert stranger.returncode == 8 and "refused the connection" in stranger.stderr, stranger.stderr
        refused = _cli(*push, "--url", url.format("dash"), user="dash")
        assert refused.returncode == 8 and "Not authorized" in refused.stderr, refused.stdout + refused.stderr
        pushed = _cli(*push, "--url", url.format("tech-alice"), user="tech-alice")
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        committed = dash.wait_for(lambda m: m.topic == f"{base}/model/state"
                                  and json.loads(m.payload).get("status") == "committed", timeout=90)
        assert json.loads(committed[-1].payload)["installed_version"] == "2"
    finally:
        stop_service(proc)
        dash.close()
    text = log.read_text(errors="replace")
    assert "refused" not in text.lower() and "not authorized" not in text.lower(), text[-3000:]
    assert password("dev-a") not in text


def test_client_certificate_cn_is_the_device_identity(tmp_path, broker_factory, tls_files):
    """`use_identity_as_username`: the certificate's CN (line1-cam1) is the user the patterns see; no password."""
    import ssl

    acl = acl_file(tmp_path / "auth", acl_text(Fleet(devices=("line1-cam1", "line1-cam2"))))
    b = broker_factory("certs", allow_anonymous=False, extra_conf=tls_files.listener_conf(require_certificate=True)
                       + f"\nuse_identity_as_username true\nacl_file {acl}")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(tls_files.ca), certfile=str(tls_files.client_cert), keyfile=str(tls_files.client_key),
              cert_reqs=ssl.CERT_REQUIRED)
    acks: dict = {}
    c.on_publish = lambda c_, u, mid, rc, p: acks.__setitem__(mid, "refused" if rc.is_failure else "accepted")
    c.connect("localhost", b.port)
    c.loop_start()
    try:
        def pub(topic: str) -> str:
            info = c.publish(topic, b"x", qos=1)
            info.wait_for_publish(10)
            return acks[info.mid]
        assert pub("smartstock/plant/line1/line1-cam1/state") == "accepted"
        assert pub("smartstock/plant/line1/line1-cam2/state") == "refused"
        assert pub("smartstock/plant/line1/line1-cam1/model/desired") == "refused"
    finally:
        c.loop_stop()
        c.disconnect()


def test_a_new_device_is_added_without_restarting_the_broker(tmp_path, acl_broker):
    """New lines in the password file and the ACL take effect on SIGHUP (mosquitto reloads both)."""
    import signal

    auth = tmp_path / "auth"
    passwords(auth, {u: password(u) for u in (*USERS, "dev-c")})
    acl_file(auth, acl_text(Fleet(devices=(*FLEET.devices, "dev-c"), technicians=FLEET.technicians,
                                  dashboards=FLEET.dashboards)))
    acl_broker.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        try:
            dev = Account(acl_broker, "dev-c")
            break
        except AssertionError:
            assert time.monotonic() < deadline, "dev-c could not log in after the reload"
            time.sleep(0.2)
    try:
        assert dev.publish("smartstock/plant/line1/dev-c/state") in ("Success", "No matching subscribers")
        assert dev.publish("smartstock/plant/line1/dev-a/state") == "Not authorized"
    finally:
        dev.close()


def test_a_device_listener_with_username_as_client_id_stops_a_takeover(tmp_path, broker_factory):
    """Any account may connect with the client id `smartstock-<device>` and so disconnect that device;
    on a listener with `use_username_as_clientid` the broker uses the user name instead. People use
    another listener: there, two tools of one technician must not disconnect each other."""
    from tests.fixtures.broker import free_port

    auth = tmp_path / "auth"
    people = free_port()
    b = broker_factory("ids", allow_anonymous=False, extra_conf="\n".join([
        "use_username_as_clientid true", f"listener {people} 127.0.0.1",
        f"password_file {passwords(auth, {u: password(u) for u in USERS})}",
        f"acl_file {acl_file(auth, acl_text(FLEET))}"]))
    dropped: list[str] = []

    def login(port: int, user: str, client_id: str) -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.username_pw_set(user, password(user))
        up = threading.Event()
        c.on_connect = lambda c_, u, f, rc, p: up.set() if not rc.is_failure else None
        c.on_disconnect = lambda c_, u, f, rc, p: dropped.append(f"{user}:{client_id}:{rc}")
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert up.wait(10), f"{user} could not log in on {port}"
        return c

    clients = [login(b.port, "dev-a", "smartstock-dev-a"), login(b.port, "dev-b", "smartstock-dev-a"),
               login(people, "tech-alice", "smartstock-ota-1"), login(people, "tech-alice", "smartstock-tail-2")]
    time.sleep(1.0)  # a takeover shows as a disconnect of the first client within milliseconds
    try:
        assert dropped == []
    finally:
        for c in clients:
            c.loop_stop()
            c.disconnect()


def test_reply_prefix_is_open_to_devices_and_technicians_only(tmp_path, broker_factory):
    """With mqtt.reply_prefix, devices answer MQTT 5 requests there and technicians read the answers."""
    fleet = Fleet(reply_prefix="replies/technicians", devices=("dev-a",), technicians=("tech-alice",),
                  dashboards=("dash",))
    auth = tmp_path / "auth"
    b = broker_factory("reply", allow_anonymous=False, extra_conf=(
        f"password_file {passwords(auth, {u: password(u) for u in ('dev-a', 'tech-alice', 'dash')})}\n"
        f"acl_file {acl_file(auth, acl_text(fleet))}"))
    tech, dev, dash = Account(b, "tech-alice"), Account(b, "dev-a"), Account(b, "dash")
    try:
        tech.subscribe("replies/technicians/#")
        assert dash.publish("replies/technicians/r1", b"forged") == "Not authorized"
        assert dev.publish("replies/technicians/r1", b"answer") == "Success"
        assert tech.wait_topic("replies/technicians/r1").payload == b"answer"
    finally:
        for a in (tech, dev, dash):
            a.close()
