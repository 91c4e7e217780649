"""The appliance part of `smartstock demo`: the real service on a replayed folder of sample parts.

Runs after the inventory steps of edge/demo.py (same store): sample part images replayed at
a camera-like rate, the shipped defect model, stock booked per part, plans and alerts refreshed,
the status page and JSON endpoints served, and, when mosquitto is installed, a local broker on a
free port with a subscriber that shows what was published (otherwise the outbox backlog is shown).
"""

from __future__ import annotations

import csv
import getpass
import json
import logging
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEMO_SKU = "GEAR-A"      # made on this line in the demo config
DEMO_PARTS = 150         # the 60 sample images replayed in a loop
DEMO_FPS = 15.0
SAMPLE_PARTS = Path(__file__).resolve().parent / "sample_parts"  # synthetic surfaces, see its README


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Broker:
    """mosquitto on a free loopback port for the demo's lifetime."""

    def __init__(self, folder: Path) -> None:
        self.binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        self.folder = folder
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> bool:
        if self.binary is None:
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        conf = self.folder / "mosquitto.conf"
        conf.write_text(f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\nallow_anonymous true\n"
                        "log_dest stdout\nlog_type error\n")
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=open(self.folder / "mosquitto.log", "ab"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                threading.Event().wait(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None


class _Subscriber:
    """Collects what reaches the broker under the device's base topic (the dashboard's view)."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self._c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="smartstock-demo-viewer")
        self._c.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self._c.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, bool(m.retain)))
        self._c.connect("127.0.0.1", port)
        self._c.loop_start()

    def stop(self) -> None:
        self._c.loop_stop()
        self._c.disconnect()


def _sample_labels(folder: Path) -> dict[str, str]:
    with open(folder / "labels.csv", newline="", encoding="utf-8") as f:
        return {row["file"]: row["label"] for row in csv.DictReader(f)}


def run_appliance(ctx: Any, say: Callable[[str], None], *, model: Path | None = None, parts_total: int = DEMO_PARTS,
                  fps: float = DEMO_FPS) -> dict[str, Any]:
    """Run the service on the sample parts into ctx.out; returns a summary (also written to appliance.json).
    `model` defaults to the shipped one; tests pass their exported model and fewer parts."""
    from edge.app import App
    from smartstock.sync.topics import Topics

    from smartstock.errors import ModelError
    from smartstock.vision.classifier import default_model_path

    if model is None and ctx.config.vision.model is None:
        try:
            model = default_model_path()
        except ModelError as e:  # a checkout without models/defect: say so, keep the rest of the demo
            say(f"appliance step skipped: {e}")
            return {}
    out: Path = ctx.out
    parts = SAMPLE_PARTS
    truth = _sample_labels(parts)
    share = sum(v != "ok" for v in truth.values()) / max(len(truth), 1)
    say(f"camera: {len(truth)} sample part images ({share:.0%} defective) replayed in a loop from {parts}")

    cfg = ctx.config.model_copy(deep=True)
    cfg.device.device_id = "demo-cam1"
    cfg.source.uri, cfg.source.fps, cfg.source.loop = str(parts), fps, True
    if model is not None:
        cfg.vision.model = model
    cfg.inspection.sku = DEMO_SKU
    cfg.http.port = 0
    broker = _Broker(out / "mosquitto")
    online = broker.start()
    if online:
        cfg.mqtt.enabled, cfg.mqtt.host, cfg.mqtt.port = True, "127.0.0.1", broker.port
        say(f"mosquitto started on 127.0.0.1:{broker.port}; the service publishes to it through the outbox")
    else:
        say("mosquitto not installed: running offline, MQTT messages wait in the outbox")
    topics = Topics.from_config(cfg.mqtt, cfg.device)
    viewer = _Subscriber(broker.port, f"{topics.base}/#") if online else None
    app = App(cfg, out / "state", max_parts=parts_total)
    summary: dict[str, Any] = {}
    try:
        app.start()
        url = f"http://127.0.0.1:{app.http.port}/" if app.http else "(http disabled)"
        say(f"service running: status page {url} (also /api/status, /metrics, /healthz); "
            f"replaying at {fps:g} parts/s for about {parts_total / fps:.0f} s")
        while not app.loop.done.wait(2.0):  # type: ignore[union-attr]
            m = app.metrics.snapshot()
            say(f"  {m['parts_inspected']} parts inspected, {m['defects']} defective, "
                f"latency p50 {m['latency_ms_p50']:.0f} ms, camera {app.source.status}")  # type: ignore[union-attr]
        if app.refresher is not None:  # the first plan (forecasts per SKU) runs at start-up in its thread
            deadline = time.monotonic() + 120
            while not app.refresher.plans and time.monotonic() < deadline:
                threading.Event().wait(0.5)
            app.refresher.check_alerts(force_publish=True)
            app.refresher.publish_state()
        if viewer is not None:  # give the sync worker a moment to drain the outbox
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and app.values()["outbox_rows"] > 0:
                threading.Event().wait(0.2)
        status = app.status()
        (out / "status.json").write_text(json.dumps(status, indent=2, default=str))
        (out / "metrics.txt").write_text(app.metrics_text())
        if app.http:
            with urllib.request.urlopen(f"http://127.0.0.1:{app.http.port}/healthz", timeout=5) as r:
                summary["healthz"] = r.read().decode().strip()
        summary.update(status=status)
    finally:
        app.stop()
        if viewer is not None:
            viewer.stop()
        broker.stop()

    st = summary["status"]
    stock = st["stock"].get(DEMO_SKU, {})
    say(f"inspected {st['counters']['parts_inspected']} parts of {DEMO_SKU}: stock now produced "
        f"{stock.get('produced', 0):g}, scrapped {stock.get('scrapped', 0):g}, on hand {stock.get('on_hand', 0):g}; "
        f"frame-to-result p50 {st['latency_ms']['p50']:.0f} ms, p99 {st['latency_ms']['p99']:.0f} ms")
    plan = next((p for p in st["plans"] if p.get("sku") == DEMO_SKU), None)
    if plan:
        say(f"{DEMO_SKU} plan: EOQ/lot {plan.get('lot_size', plan.get('eoq', 0)) or 0:.0f}, "
            f"reorder point {plan.get('reorder_point') or 0:.0f}, safety stock {plan.get('safety_stock') or 0:.0f}")
    say(f"defect rate measured {st['defect_rate']:.0%} (the sample holds {share:.0%} defective parts)")
    say(f"open alerts: {', '.join(a['key'] for a in st['alerts']) or 'none'}")
    if viewer is not None:
        seen: dict[str, int] = {}
        for topic, _, _ in viewer.messages:
            seen[topic] = seen.get(topic, 0) + 1
        summary["mqtt_topics"] = seen
        say(f"MQTT: {len(viewer.messages)} messages reached the broker on {len(seen)} topics:")
        for topic, n in sorted(seen.items())[:12]:
            say(f"    {topic}  x{n}")
        if not viewer.messages:
            say(f"  (nothing published: no MQTT sync step in this build; {st['outbox']['rows']} messages wait in the outbox)")
    else:
        say(f"outbox backlog (offline): {st['outbox']['rows']} messages, {st['outbox']['bytes']} bytes")
    snaps = out / "state" / "snapshots"
    say(f"defect and uncertain-part snapshots: {snaps} ({len(list(snaps.glob('*.jpg'))) if snaps.is_dir() else 0} "
        "JPEGs); "
        f"status: {out / 'status.json'}, metrics: {out / 'metrics.txt'}")
    (out / "appliance.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "status"}, indent=2))
    return summary
