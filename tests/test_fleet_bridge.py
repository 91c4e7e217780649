"""Site broker to plant broker (issue 17): two real mosquitto processes and the bridge that
`smartstock mqtt bridge` writes, against a plant broker running the ACL of `smartstock mqtt acl`.

Up: the product's outbox publisher (the zero-loss driver: record_parts + SyncService) publishes N
inspection events to the site broker while the plant broker is stopped; the site broker is restarted
too during the cut (its queue must survive on disk); when the plant comes back a persistent-session
consumer there finds every event id. Down: with the site broker stopped, a technician publishes an OTA
release (retained) and a command (not retained) on the plant; both reach the site once it is back.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from smartstock.sync.brokerconf import Bridge, Fleet, acl_text, bridge_text
from tests.conftest import ROOT, wait_for, wait_until
from tests.fixtures.broker import Broker, acl_file, passwords

pytestmark = pytest.mark.slow
N_EVENTS = 3000  # three times mosquitto's default max_queued_messages (1000): the bridge file must raise it
SITE = "site1"
USERS = {"bridge-site1": "pw-bridge-0123", "tech": "pw-tech-0123", "dash": "pw-dash-0123"}


class Persistent:
    """A client with a persistent session (clean session off, fixed id) that reconnects by itself."""

    def __init__(self, port: int, client_id: str, filters: list[str], user: str | None = None) -> None:
        self.got: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                             protocol=mqtt.MQTTv311)
        if user:
            self.c.username_pw_set(user, USERS[user])
        self.c.reconnect_delay_set(0.1, 0.5)
        self.subscribed = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe([(f_, 1) for f_ in filters])
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.c.on_message = self._on
        self.c.connect("127.0.0.1", port, keepalive=5)
        self.c.loop_start()
        assert self.subscribed.wait(10), f"{client_id} could not subscribe"

    def _on(self, _c, _u, msg) -> None:
        with self.lock:
            self.got.append(msg)

    def on(self, pred) -> list[mqtt.MQTTMessage]:
        with self.lock:
            return [m for m in self.got if pred(m)]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _publish(port: int, user: str, topic: str, payload: bytes, retain: bool) -> str:
    """Publish as `user` over MQTT 5; the PUBACK reason code ("No matching subscribers": nobody, not even
    a bridge's persistent session, wants it)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, USERS[user])
    acks: dict = {}
    c.on_publish = lambda c_, u, mid, rc, p: acks.__setitem__(mid, str(rc))
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        info = c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        return acks[info.mid]
    finally:
        c.loop_stop()
        c.disconnect()


def _event_ids(msgs: list[mqtt.MQTTMessage]) -> list[str]:
    import json

    out = []
    for m in msgs:
        body = json.loads(m.payload)
        out += [e["event_id"] for e in body.get("events", [body])]
    return out


@pytest.mark.timeout(400)
def test_bridge_loses_no_event_through_a_cut_and_carries_releases_down(tmp_path: Path):
    auth = tmp_path / "plant-auth"
    plant_acl = acl_text(Fleet(technicians=("tech",), dashboards=("dash",), bridges={"bridge-site1": SITE}))
    plant = Broker(tmp_path / "plant", persistence=True, allow_anonymous=False,
                   extra_conf=f"password_file {passwords(auth, USERS)}\nacl_file {acl_file(auth, plant_acl)}").start()
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    bridge = bridge_text(Fleet(), Bridge(site=SITE, address=f"127.0.0.1:{plant.port}", remote_user="bridge-site1",
                                         remote_password=USERS["bridge-site1"], cafile=None,
                                         persistence_dir=f"{site_dir}/", restart_s=(1, 2)))
    site = Broker(site_dir, extra_conf=bridge).start()  # the site broker's persistence is the bridge file's
    base = f"smartstock/{SITE}/line1/zl-dev"
    consumer = Persistent(plant.port, "plant-consumer", [f"smartstock/{SITE}/+/+/events/inspection",
                                                         f"smartstock/{SITE}/+/+/status"], user="dash")
    on_site = None
    try:
        # the bridge is up once a message published on the site reaches the plant
        def bridged() -> bool:
            _anon_publish(site.port, f"smartstock/{SITE}/line1/probe/status", b"online")
            return bool(consumer.on(lambda m: m.topic.endswith("/probe/status")))
        wait_until(bridged, timeout=30, what="the bridge to connect")

        plant.stop()  # the cut: everything below queues on the site broker
        log = tmp_path / "driver.log"
        driver = subprocess.run([sys.executable, "-m", "tests.test_sync_zero_loss", "--state", str(tmp_path / "dev"),
                                 "--port", str(site.port), "--n", str(N_EVENTS), "--rate", "1500", "--site", SITE],
                                cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT, timeout=240)
        assert driver.returncode == 0, log.read_text()[-3000:]  # the site broker acknowledged every event
        assert not consumer.on(lambda m: m.topic == f"{base}/events/inspection")
        site.restart()  # clean stop and start during the cut: the queue for the plant is on disk
        plant.start()
        expected = {f"zl-{i:06d}" for i in range(N_EVENTS)}
        events = lambda: consumer.on(lambda m: m.topic == f"{base}/events/inspection")  # noqa: E731
        wait_for(lambda: set(_event_ids(events())) >= expected, timeout=120)
        ids = _event_ids(events())
        assert set(ids) == expected, f"{len(expected - set(ids))} of {N_EVENTS} events lost"
        print(f"\nbridge: {N_EVENTS} events through a plant outage and a site broker restart: "
              f"{len(set(ids))} distinct at the plant, {len(ids) - len(set(ids))} duplicates, 0 lost")

        # down: releases and commands published on the plant while the site broker is away
        on_site = Persistent(site.port, "site-device", [f"{base}/model/desired", "smartstock/+/+/+/cmd/+",
                                                         "smartstock/groups/+/model/desired"])
        site.stop()
        # "Success": the bridge's persistent session on the plant wants them, so the plant queues them
        assert _publish(plant.port, "tech", f"{base}/model/desired", b'{"release": 2}', retain=True) == "Success"
        assert _publish(plant.port, "tech", "smartstock/groups/g1/model/desired", b'{"release": 3}', retain=True) \
            == "Success"
        assert _publish(plant.port, "tech", f"{base}/cmd/ping", b'{"request_id": "r1"}', retain=False) == "Success"
        assert _publish(plant.port, "tech", "smartstock/site2/line1/other/cmd/ping", b"not for site1",
                        retain=False) == "No matching subscribers"  # another site's: not bridged here
        site.start()
        down = {f"{base}/model/desired", "smartstock/groups/g1/model/desired", f"{base}/cmd/ping"}
        wait_until(lambda: {m.topic for m in on_site.got} >= down, timeout=60,
                   what=f"the release and the command at the site (have {sorted({m.topic for m in on_site.got})})")
        _anon_publish(site.port, f"{base}/status", b"marker")  # nothing else for the site: checked after it
        wait_until(lambda: consumer.on(lambda m: m.payload == b"marker"), timeout=30, what="the marker")
        assert not [m for m in on_site.got if b"not for site1" in m.payload]
    finally:
        consumer.close()
        if on_site is not None:
            on_site.close()
        site.stop()
        plant.stop()


def _anon_publish(port: int, topic: str, payload: bytes) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        c.loop_stop()
        c.disconnect()
