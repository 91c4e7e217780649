"""Lightweight simulated devices for the fleet benchmark: one MQTT connection each, no camera, no model.

Each one speaks the device's own protocol through the device's own code: topics from
`smartstock.sync.topics.Topics`, payloads from `smartstock.sync.payloads` (`message`, `event`,
`dumps`), the model state from `smartstock.ota.report.StateReporter`, and for `model/desired` the
real envelope check (`smartstock.ota.verify.open_envelope`: Ed25519 against a keyring) and policy
(`smartstock.ota.policy.decide`), so a simulated device answers a release with the same model/state
sequence a real one publishes for an MQTT artifact (verifying, installing, trial, committed) and
refuses what a real one refuses. Only the install itself is replaced by a wait of `--trial-s`.

Run as a child of bench_fleet (`python -m benchmarks.fleet_sim ...`); SIGTERM ends it and it prints its
counters as one JSON line. Every paho client runs its own network thread (about 200 threads for a plant:
they sleep in select(); the publishing and the OTA work happen on two threads of ours).
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import itertools
import json
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from smartstock.ota import addressing
from smartstock.ota.keys import Keyring
from smartstock.ota.policy import Installed, PolicyInput, decide
from smartstock.ota.refusal import HASH_MISMATCH, UpdateRefused
from smartstock.ota.report import StateReporter
from smartstock.ota.verify import open_envelope
from smartstock.sync.client import STATUS_OFFLINE, STATUS_ONLINE
from smartstock.sync.payloads import dumps, event, message
from smartstock.sync.topics import Topics

KIND = "defect-classifier"


class SimDevice:
    def __init__(self, topics: Topics, groups: list[str], keyring: Keyring, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.topics, self.groups, self.keyring = topics, groups, keyring
        self.reporter = StateReporter(None, None, topics.device_id)
        self.installed = Installed(release=1, sha256="0" * 64, model_id="tiny-defect")
        self.seen: set[str] = set()
        self.waiting: dict[str, Any] = {}  # artifact sha256 -> release waiting for it
        self.parts = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-{topics.device_id}",
                                  protocol=mqtt.MQTTv311)
        self.client.will_set(topics.status, STATUS_OFFLINE, qos=1, retain=True)
        self.client.max_queued_messages_set(10_000)
        self.inbox: queue.Queue | None = None
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.inbox.put((self, m.topic, bytes(m.payload)))
        self.port = port

    def start(self, inbox: queue.Queue) -> None:
        self.inbox = inbox
        self.client.connect("127.0.0.1", self.port, keepalive=60)
        self.client.loop_start()

    def _on_connect(self, client: Any, _u: Any, _f: Any, _rc: Any, _p: Any = None) -> None:
        client.publish(self.topics.status, STATUS_ONLINE, qos=1, retain=True)
        bases = [self.topics.base] + [addressing.group_base(self.topics.prefix, g) for g in self.groups]
        client.subscribe([(addressing.desired(b), 1) for b in bases])
        self.report("serving", installed=self.installed, detail="serving the shipped model")
        self.publish_state()

    def report(self, status: str, *, release: Any = None, installed: Installed | None = None, **kw: Any) -> None:
        r = release
        payload = self.reporter.report(KIND, status, release=r.release if r else None,
                                       sha256=r.artifact.sha256 if r else None, model_id=r.model_id if r else None,
                                       installed=None if installed is None else {
                                           "release": installed.release, "sha256": installed.sha256,
                                           "model_id": installed.model_id}, **kw)
        self.client.publish(self.topics.model_state, dumps(payload), qos=1, retain=True)

    def publish_state(self) -> None:
        self.client.publish(self.topics.state, dumps(message(
            self.topics.device_id, model_id=self.installed.model_id, model_release=self.installed.release,
            provider="sim", camera="ok", cameras={"cam0": "ok"}, fps=0.0, latency_ms_p50=0.0, latency_ms_p99=0.0,
            parts=self.parts, dropped=0, defect_rate=0.0, backlog=0, rss_mb=0.0, groups=self.groups)),
            qos=1, retain=True)

    def inspect(self) -> None:
        self.parts += 1
        self.client.publish(self.topics.inspection_events, dumps(event(
            self.topics.device_id, sku="PCB-100", label="ok", score=0.98, is_defect=False, latency_ms=3.1,
            model_id=self.installed.model_id, model_release=self.installed.release, frame_id=self.parts,
            snapshot=None, source="cam0")), qos=1)

    # -- OTA, on the worker thread -------------------------------------------------------------------
    def on_desired(self, raw: bytes, base: str, max_artifact_bytes: int) -> None:
        digest = hashlib.sha256(raw).hexdigest()
        if not raw or digest in self.seen:
            return
        self.seen.add(digest)
        release = None
        try:
            _env, release = open_envelope(raw, self.keyring)
            verdict = decide(release, PolicyInput(device_id=self.topics.device_id, groups=tuple(self.groups),
                                                  supported_kinds=(KIND,), allow_downgrade=False,
                                                  max_artifact_bytes=max_artifact_bytes, installed=self.installed))
        except UpdateRefused as e:
            self.report("refused", release=release, error=e.reason, detail=e.detail)
            return
        if verdict == "already_installed":
            self.report("up_to_date", release=release, installed=self.installed,
                        detail=f"release {release.release} already serves")
            return
        self.report("verifying", release=release, progress=10, summary=release.summary,
                    detail="signature ok, target/expiry/release ok")
        sha = release.artifact.sha256
        self.waiting[sha] = release
        self.client.subscribe(addressing.artifact(base, sha), qos=1)

    def on_artifact(self, sha: str, data: bytes) -> Any:
        release = self.waiting.pop(sha, None) if data else None
        if release is None:
            return None
        if hashlib.sha256(data).hexdigest() != sha or len(data) != release.artifact.size:
            self.seen.clear()  # as a real device: a re-push may try again
            self.report("refused", release=release, error=HASH_MISMATCH, detail="artifact does not match")
            return None
        self.report("installing", release=release, progress=60, detail="simulated install")
        self.report("trial", release=release, progress=80, detail="simulated trial")
        return release

    def commit(self, release: Any) -> None:
        self.installed = Installed(release=release.release, sha256=release.artifact.sha256, model_id=release.model_id)
        self.report("committed", release=release, installed=self.installed, progress=100, serving="current",
                    detail="simulated trial passed")
        self.publish_state()


def run(args: argparse.Namespace) -> dict[str, Any]:
    keyring = Keyring(Path(args.keyring))
    devices = []
    for i in range(args.count):
        t = Topics(args.prefix, args.site, f"l{i % args.lines}", f"sim-{i:03d}")
        devices.append(SimDevice(t, [args.group], keyring, args.port))
    inbox: queue.Queue = queue.Queue()
    for d in devices:
        d.start(inbox)
        time.sleep(0.002)  # not 200 CONNECTs in the same millisecond
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    counters = {"events": 0, "states": 0, "committed": 0}
    max_art = int(args.max_artifact_mb * 1024 * 1024)

    def ota_worker() -> None:
        due: list[tuple[float, int, SimDevice, Any]] = []  # trials ending
        tie = itertools.count()
        while not stop.is_set():
            timeout = max(0.0, min(0.2, due[0][0] - time.monotonic())) if due else 0.2
            try:
                dev, topic, payload = inbox.get(timeout=timeout)
                if topic.endswith("/model/desired"):
                    dev.on_desired(payload, topic.removesuffix("/model/desired"), max_art)
                elif "/model/artifact/" in topic:
                    rel = dev.on_artifact(topic.rsplit("/", 1)[1], payload)
                    if rel is not None:
                        heapq.heappush(due, (time.monotonic() + args.trial_s, next(tie), dev, rel))
            except queue.Empty:
                pass
            while due and due[0][0] <= time.monotonic():
                _, _, dev, rel = heapq.heappop(due)
                dev.commit(rel)
                counters["committed"] += 1

    worker = threading.Thread(target=ota_worker, name="sim-ota", daemon=True)
    worker.start()
    print(json.dumps({"ready": len(devices)}), flush=True)
    # inspections at args.rate parts/s per device, spread evenly; state every args.state_s
    period = 1.0 / args.rate if args.rate > 0 else None
    t0 = time.monotonic()
    next_state = t0
    k = 0
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_state:
            for d in devices:
                d.publish_state()
            counters["states"] += len(devices)
            next_state = now + args.state_s
        if period is None:
            stop.wait(0.5)
            continue
        due_parts = int((now - t0) / period * len(devices))
        while k < due_parts:
            devices[k % len(devices)].inspect()
            k += 1
            counters["events"] += 1
        stop.wait(0.01)
    for d in devices:
        d.client.publish(d.topics.status, STATUS_OFFLINE, qos=1, retain=True)
        d.client.loop_stop()
        d.client.disconnect()
    return {**counters, "seconds": time.monotonic() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fleet_sim")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--keyring", required=True)
    p.add_argument("--group", default="fleet")
    p.add_argument("--prefix", default="smartstock")
    p.add_argument("--site", default="plant")
    p.add_argument("--lines", type=int, default=4)
    p.add_argument("--rate", type=float, default=2.0, help="inspected parts per second per device")
    p.add_argument("--state-s", type=float, default=10.0, help="seconds between retained states (mqtt.stats_interval_s)")
    p.add_argument("--trial-s", type=float, default=1.0, help="seconds a simulated install + trial takes")
    p.add_argument("--max-artifact-mb", type=float, default=200.0)
    args = p.parse_args(argv)
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
