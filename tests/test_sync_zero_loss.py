"""Zero loss: N inspection events through the outbox while the device's link is cut again and again.

The device is a separate process (the driver at the bottom of this file) that books parts with the
edge loop's own `record_parts` (inspection + movement + outbox event in one transaction) and runs
the real `SyncService`. Its broker connection goes through a TCP proxy the test controls. A
subscriber with a persistent session, connected to the broker directly, must end with every event
id: duplicates are allowed and counted, losses are not.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.test_service import model_file, parts  # noqa: F401 (fixtures: the exported model, a parts folder)

ROOT = Path(__file__).resolve().parents[1]
N_EVENTS = 20_000


class CutProxy:
    """TCP proxy on loopback: `cut()` drops live connections, `refuse = True` closes new ones at once,
    `blackhole = True` swallows what the device sends (its publishes stay unacknowledged)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.refuse = False
        self.blackhole = False
        self.cuts = 0
        self._live: list[socket.socket] = []
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while self._running:
            try:
                client, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            if self.refuse:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=1.0)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._live += [client, upstream]
            for a, b, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(a, b, up), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while data := src.recv(65536):
                if not (upstream and self.blackhole):
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self) -> None:
        with self._lock:
            live, self._live = self._live, []
        for s in live:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.cuts += 1

    def close(self) -> None:
        self._running = False
        self.cut()
        self.sock.close()


class Subscriber:
    """Persistent session (clean_session False, fixed client id), QoS 1, straight to the broker."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.ids: collections.Counter[str] = collections.Counter()
        self.first_seen: list[str] = []
        self.topic = topic
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="zero-loss-sub", clean_session=False,
                                  protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, 1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, _c, _u, msg) -> None:
        body = json.loads(msg.payload)
        for ev in body.get("events", [body]):
            eid = ev["event_id"]
            if eid not in self.ids:
                self.first_seen.append(eid)
            self.ids[eid] += 1

    def order_breaks(self, rank: dict[str, int]) -> int:
        """First arrivals that came after a later event (per-topic order broken)."""
        ranks = [rank[e] for e in self.first_seen if e in rank]
        return sum(1 for a, b in zip(ranks, ranks[1:]) if b < a)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _driver(state: Path, port: int, n: int, rate: float, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tests.test_sync_zero_loss", "--state", str(state), "--port", str(port),
           "--n", str(n), "--rate", str(rate)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT)


PLAN = ["cut"] * 4 + ["broker"] + ["cut"] * 3 + ["kill"] + ["cut"] * 3 + ["long"] + ["broker"]


def inspected(state: Path) -> int:
    """Parts committed by the device so far (read from its store, as another process may)."""
    import sqlite3

    if not (state / "smartstock.sqlite").exists():
        return 0
    conn = sqlite3.connect(state / "smartstock.sqlite", timeout=10)
    try:
        return conn.execute("SELECT COUNT(*) FROM inspections").fetchone()[0]
    except sqlite3.OperationalError:  # not migrated yet
        return 0
    finally:
        conn.close()


def _disrupt(broker, proxy: CutProxy, sub: Subscriber, start, restart, state: Path) -> tuple[subprocess.Popen, list[str]]:
    """Run PLAN against a publishing device: cuts (links dropped, new ones refused), broker restarts,
    a SIGKILL while publishes are unacknowledged, one long outage. Returns the live device process.
    Each step is recorded with how many parts were committed when it began."""
    dev = start()
    disruptions: list[str] = []
    try:
        assert _wait(lambda: len(sub.ids) > 500, 90), "the device never published"
        for step in PLAN:
            time.sleep(0.8)
            at = inspected(state)
            if step == "cut":
                proxy.refuse = True
                proxy.cut()
                time.sleep(0.4)
                proxy.refuse = False
            elif step == "broker":
                broker.restart()  # SIGTERM: mosquitto saves its persistence file, then starts from it
            elif step == "kill":  # while publishes are in flight and unacknowledged
                proxy.blackhole = True
                time.sleep(0.5)
                dev.send_signal(signal.SIGKILL)
                dev.wait(10)
                proxy.cut()
                proxy.blackhole = False
                dev = restart()
            elif step == "long":
                proxy.refuse = True
                proxy.cut()
                time.sleep(6.0)  # the device keeps producing into its outbox meanwhile
                proxy.refuse = False
            disruptions.append(f"{step}@{at}")
    except BaseException:
        dev.kill()
        raise
    return dev, disruptions


def _report(kind: str, expected: set[str], sub: Subscriber, proxy: CutProxy, disruptions: list[str],
            rank: dict[str, int], extra: str = "") -> None:
    missing = expected - set(sub.ids)
    duplicates = sum(c - 1 for c in sub.ids.values())
    breaks = sub.order_breaks(rank)
    print(f"\nzero loss ({kind}): {len(expected)} events, {proxy.cuts} proxy cuts, disruptions {disruptions}, "
          f"{duplicates} duplicates, {len(missing)} missing, order breaks {breaks}{extra}")
    steps = [d.split("@")[0] for d in disruptions]
    assert proxy.cuts >= 10 and steps.count("broker") >= 2 and "kill" in steps
    during = [d for d in disruptions if int(d.split("@")[1]) < len(expected)]
    assert len(during) >= 12, f"most disruptions must hit while parts are still being produced: {disruptions}"
    assert not missing, f"{len(missing)} events lost, e.g. {sorted(missing)[:5]}"
    assert set(sub.ids) == expected, "unexpected event ids"
    assert breaks == 0, "events of one topic arrived out of order"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_zero_loss_through_cuts_broker_restarts_and_sigkill(tmp_path, broker_factory):
    """Driver process: deterministic event ids, the edge recorder + SyncService path."""
    broker = broker_factory("zl", persistence=True)
    proxy = CutProxy(broker.port)
    sub = Subscriber(broker.port, "smartstock/plant/line1/zl-dev/events/inspection")
    state, log = tmp_path / "device", tmp_path / "device.log"
    start = lambda: _driver(state, proxy.port, N_EVENTS, 1000.0, log)  # noqa: E731
    try:
        dev, disruptions = _disrupt(broker, proxy, sub, start, start, state)
        try:
            assert dev.wait(180) == 0, log.read_text()[-3000:]
        finally:
            if dev.poll() is None:
                dev.kill()
        _wait(lambda: len(sub.ids) >= N_EVENTS, 60)
    finally:
        sub.close()
        proxy.close()
    summary = json.loads(log.read_text().strip().splitlines()[-1])
    expected = [f"zl-{i:06d}" for i in range(N_EVENTS)]
    _report("driver", set(expected), sub, proxy, disruptions, {e: i for i, e in enumerate(expected)},
            f"; device: {summary}")
    assert summary["backlog"] == 0 and summary["historical"] > 0  # the long outage was replayed as history


SERVICE_CONFIG = """
[device]
device_id = "zl-svc"
[inspection]
sku = "PCB-ZL"
snapshots = false
queue_size = 64
[http]
enabled = false
[mqtt]
enabled = true
host = "127.0.0.1"
port = {port}
keepalive_s = 5
reconnect_min_s = 0.1
reconnect_max_s = 0.5
historical_after_s = 2.0
ha_discovery = false
drain_on_stop_s = 120.0
"""


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_zero_loss_with_the_real_service(tmp_path, broker_factory, model_file, parts):  # noqa: F811
    """`smartstock run` itself (camera replay, real model, loop, store, outbox, sync) under the same plan."""
    import sqlite3

    broker = broker_factory("zl-svc", persistence=True)
    proxy = CutProxy(broker.port)
    sub = Subscriber(broker.port, "smartstock/plant/line1/zl-svc/events/inspection")
    state = tmp_path / "state"
    cfg = tmp_path / "smartstock.toml"
    cfg.write_text(SERVICE_CONFIG.format(port=proxy.port))

    def start() -> subprocess.Popen:
        left = N_EVENTS - inspected(state)
        log = open(tmp_path / f"service-{time.monotonic_ns()}.log", "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTSTOCK_")}
        env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        return subprocess.Popen([sys.executable, "-m", "smartstock", "run", "--config", str(cfg), "--model",
                                 str(model_file), "--state-dir", str(state), "--source", str(parts), "--loop",
                                 "--fps", "1000", "--max-frames", str(left)], stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=tmp_path)

    try:
        dev, disruptions = _disrupt(broker, proxy, sub, start, start, state)
        try:
            rc = dev.wait(240)
        finally:
            if dev.poll() is None:
                dev.kill()
        logs = "".join(p.read_text(errors="replace")[-2000:] for p in sorted(tmp_path.glob("service-*.log")))
        assert rc == 0, logs
        conn = sqlite3.connect(state / "smartstock.sqlite")
        stored = [r[0] for r in conn.execute("SELECT event_id FROM inspections ORDER BY id")]
        left = conn.execute("SELECT COUNT(*) FROM outbox WHERE topic LIKE '%/events/inspection'").fetchone()[0]
        conn.close()
        assert len(stored) >= N_EVENTS and left == 0, f"{len(stored)} inspections, {left} events still queued"
        _wait(lambda: len(sub.ids) >= len(stored), 60)
    finally:
        sub.close()
        proxy.close()
    _report("service", set(stored), sub, proxy, disruptions, {e: i for i, e in enumerate(stored)})


def _wait(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


# -- the device side: the same recorder and sync service as the edge app ---------------------------
def main(argv: list[str] | None = None) -> int:
    import logging

    from edge.recorder import InspectedPart, record_parts
    from edge.sync_worker import SyncService
    from smartstock.config import Config
    from smartstock.store import open_store

    p = argparse.ArgumentParser()
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--site", default="plant", help="topic level of the site (test_fleet_bridge: a site broker)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    cfg = Config.model_validate({"device": {"device_id": "zl-dev", "site": a.site},
                                 "mqtt": {"enabled": True, "host": "127.0.0.1", "port": a.port, "keepalive_s": 5,
                                          "reconnect_min_s": 0.1, "reconnect_max_s": 0.5, "historical_after_s": 2.0,
                                          "ha_discovery": False}})
    store = open_store(a.state)
    svc = SyncService(cfg.mqtt, cfg.device, store)
    svc.start()
    topic = svc.topics.inspection_events
    done = store.query_one("SELECT COUNT(*) FROM inspections")[0]
    t0, batch = time.monotonic(), 20
    for start in range(done, a.n, batch):
        parts = [InspectedPart(event_id=f"zl-{i:06d}", ts=time.time(), sku="PCB-1", label="ok", score=0.9,
                               is_defect=False, latency_ms=1.0, model_id="m", model_release=1, frame_id=i)
                 for i in range(start, min(start + batch, a.n))]
        record_parts(store, parts, device_id="zl-dev", topic=topic)
        svc.wake()
        delay = t0 + (start - done + batch) / a.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        s = svc.stats()
        if s["backlog"] == 0 and s["in_flight"] == 0:
            break
        time.sleep(0.1)
    svc.stop()
    stats = svc.stats()
    store.close()
    print(json.dumps(stats), flush=True)
    return 0 if stats["backlog"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
