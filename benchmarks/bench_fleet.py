"""A simulated plant against one mosquitto: broker load, fleet status time, a staged rollout to every device.

The plant: SMARTSTOCK_BENCH_FLEET_REAL (default 2) real `smartstock run` devices replaying a folder at
camera rate (SMARTSTOCK_BENCH_FLEET_FPS, default 30) on the tiny OTA test model, plus simulated
devices up to SMARTSTOCK_BENCH_FLEET_DEVICES (default 200) in one child process (benchmarks/fleet_sim.py:
the device's own topic, payload and OTA verification code, SMARTSTOCK_BENCH_FLEET_SIM_RATE inspection
events per second each, default the real devices' fps, a retained state every 10 s). All devices are
in group `fleet`, spread over 4 lines; the real ones sort first on line l0, so a real device is the canary.

Measured in one run:
  * steady state over SMARTSTOCK_BENCH_FLEET_SECONDS (default 20): messages/s the broker received and sent
    (its $SYS counters), what a subscriber to `smartstock/#` got, the broker's CPU share, and the real
    devices' frames/s and CPU share;
  * fleet status: `smartstock.fleet.collect` over every device (skipped, with the reason printed, where
    that package is not present);
  * a staged rollout of release 2 to the whole group (canary 1, batches of 25%) through the same driver
    as `smartstock ota rollout`: total time, time per batch, devices committed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT

GROUP = "fleet"


def _env(name: str, default: float) -> float:
    return float(os.environ.get(f"SMARTSTOCK_BENCH_FLEET_{name}", default))


def _cpu_s(pid: int) -> float:
    """utime + stime of a process in seconds (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Counter:
    """A subscriber on the plant's topics and the broker's $SYS counters."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.n = 0
        self.sys: dict[str, float] = {}
        self._lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-fleet-counter")
        self.c.on_message = self._on
        self.c.connect("127.0.0.1", port)
        self.c.subscribe([("smartstock/#", 0), ("$SYS/broker/messages/+", 0), ("$SYS/broker/publish/messages/+", 0)])
        self.c.loop_start()

    def _on(self, _c: Any, _u: Any, msg: Any) -> None:
        if msg.topic.startswith("$SYS/"):
            try:
                self.sys[msg.topic] = float(msg.payload)
            except ValueError:
                pass
            return
        with self._lock:
            self.n += 1

    def snapshot(self) -> tuple[float, int, dict[str, float]]:
        with self._lock:
            return time.monotonic(), self.n, dict(self.sys)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _rates(a: tuple[float, int, dict[str, float]], b: tuple[float, int, dict[str, float]]) -> dict[str, float]:
    dt = b[0] - a[0]
    out = {"subscriber_msgs_per_s": (b[1] - a[1]) / dt}
    for key, name in (("$SYS/broker/messages/received", "broker_received_msgs_per_s"),
                      ("$SYS/broker/messages/sent", "broker_sent_msgs_per_s")):
        if key in a[2] and key in b[2]:
            out[name] = (b[2][key] - a[2][key]) / dt  # $SYS updates every second: +-1 s of counts
    return out


class Plant:
    def __init__(self, root: Path, total: int, real: int, fps: float, sim_rate: float) -> None:
        from tests.conftest import service_port
        from tests.fixtures.broker import Broker
        from tests.fixtures.ota import fleet_device_config, frame_folder, make_model_dir, technician_key

        self.root = root
        self.broker = Broker(root / "broker", extra_conf="sys_interval 1").start()
        self.key, self.keyring = technician_key(root)
        shipped = make_model_dir(root / "shipped", release=1)
        self.model2 = make_model_dir(root / "r2", release=2, bias=(10.5, -10.5))
        src = frame_folder(root / "frames", 64)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTSTOCK_")}
        self.real: dict[str, subprocess.Popen] = {}
        for i in range(real):
            name = f"cam-{i:02d}"
            d = root / name
            config = fleet_device_config(d, name, line="l0", groups=[GROUP], model=shipped, keyring=self.keyring,
                                         trial_frames=30)
            self.real[name] = subprocess.Popen(
                [sys.executable, "-m", "smartstock", "run", "--config", str(config), "--source", str(src),
                 "--loop", "--fps", f"{fps:g}", "--state-dir", str(d / "state"), "--mqtt", self.broker.url,
                 "--http-port", "0"], cwd=ROOT, env=env, stdout=open(d / "service.log", "ab"), stderr=subprocess.STDOUT)
        for name, proc in self.real.items():
            service_port(root / name / "state", proc, root / name / "service.log")
        self.sim = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fleet_sim", "--port", str(self.broker.port), "--count", str(total - real),
             "--keyring", str(self.keyring), "--group", GROUP, "--rate", f"{sim_rate:g}"],
            cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=open(root / "sim.log", "ab"),
            text=True)

    def stop(self) -> dict[str, Any]:
        from tests.conftest import stop_service

        sim = {}
        self.sim.terminate()
        try:
            out, _ = self.sim.communicate(timeout=60)
            sim = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        except (subprocess.TimeoutExpired, ValueError):
            self.sim.kill()
        for p in self.real.values():
            stop_service(p)
        self.broker.stop()
        return sim


def _wait_devices(port: int, total: int, timeout: float) -> float:
    """Seconds until every device's retained state naming the group is on the broker."""
    from tests.fixtures.broker import Probe

    t0 = time.monotonic()
    probe = Probe(port, "smartstock/+/+/+/state")
    try:
        def found() -> int:
            return len({m.topic for m in list(probe.messages) if GROUP in json.loads(m.payload).get("groups", [])})
        while found() < total:
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"only {found()} of {total} devices announced group {GROUP} within {timeout:g} s")
            time.sleep(0.2)
    finally:
        probe.close()
    return time.monotonic() - t0


def _fleet_status(url: str, total: int) -> dict[str, Any]:
    if importlib.util.find_spec("smartstock.fleet") is None:
        reason = "smartstock.fleet (fleet status, issue 17 item 1) is not in this tree"
        print(f"fleet status: skipped: {reason}")
        return {"skipped": reason}
    from smartstock.fleet import collect

    t0 = time.perf_counter()
    view = collect(url, "smartstock", wait_s=30.0)
    seconds = time.perf_counter() - t0
    summary = view.summary()
    print(f"fleet status: {summary['devices']} device(s) ({summary['online']} online) in {seconds:.2f} s")
    return {"seconds": seconds, "devices": summary["devices"], "expected": total, "summary": summary}


def _rollout(plant: Plant, root: Path) -> dict[str, Any]:
    import hashlib

    from smartstock.ota import link
    from smartstock.ota.rollout_run import Driver, discover, filters, new_rollout
    from smartstock.ota.rollout_run import open_feed
    from smartstock.ota.sign import sign_model

    env, rel = sign_model(plant.model2, release=2, key=plant.key, key_id="tech", groups=[GROUP])
    raw = env.to_json()
    artifact = plant.model2.read_bytes()
    client = link.connect(link.BrokerConn("127.0.0.1", plant.broker.port), name="bench-rollout")
    try:
        t0 = time.perf_counter()
        feed = open_feed(client, "smartstock", with_state=True)
        fleet = discover(feed, "smartstock", 30.0)
        client.unsubscribe(filters("smartstock", with_state=True)[-1])
        t_found = time.perf_counter() - t0
        ro = new_rollout(fleet, group=GROUP, site=None, line=None, release=rel, envelope_path=root / "r2.envelope.json",
                         envelope_sha256=hashlib.sha256(raw).hexdigest(), artifact_path=plant.model2, canary=1,
                         batch="25%", batch_timeout_s=600.0)
        def say(line: str) -> None:  # one line per step, not one per device
            if not line.endswith(" committed"):
                print(line, flush=True)

        driver = Driver(ro, root / f"rollout-{GROUP}.json", client, feed, fleet, raw, artifact, say)
        t1 = time.perf_counter()
        status = driver.run()
        t_run = time.perf_counter() - t1
    finally:
        link.close(client)
    c = ro.counts()
    print(f"rollout: {status}, {c['committed']} of {len(ro.devices)} committed in {t_run:.1f} s "
          f"(finding the group's devices: {t_found:.2f} s); per step: "
          + ", ".join(f"{label} {s:.1f} s" for label, s in driver.batch_seconds))
    return {"status": status, "devices": len(ro.devices), "counts": c, "discover_s": t_found, "rollout_s": t_run,
            "steps": [{"step": label, "devices": len(ro.batches[i]), "seconds": s}
                      for i, (label, s) in enumerate(driver.batch_seconds)],
            "feed_dropped": feed.dropped}


def main() -> dict:
    total = int(_env("DEVICES", 200))
    real = min(int(_env("REAL", 2)), total)
    fps, window = _env("FPS", 30), _env("SECONDS", 20)
    sim_rate = _env("SIM_RATE", fps)  # every device inspects at camera rate unless told otherwise
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        plant = Plant(root, total, real, fps, sim_rate)
        try:
            online_s = _wait_devices(plant.broker.port, total, 180.0)
            print(f"{total} devices ({real} real at {fps:g} fps, {total - real} simulated at {sim_rate:g} parts/s) "
                  f"announced in {online_s:.1f} s")
            counter = Counter(plant.broker.port)
            time.sleep(2.5)  # two $SYS rounds
            pids = {"broker": plant.broker.proc.pid, **{n: p.pid for n, p in plant.real.items()}}
            cpu0, a, parts0 = {k: _cpu_s(p) for k, p in pids.items()}, counter.snapshot(), _parts(plant)
            time.sleep(window)
            cpu1, b, parts1 = {k: _cpu_s(p) for k, p in pids.items()}, counter.snapshot(), _parts(plant)
            steady = _rates(a, b)
            elapsed = b[0] - a[0]
            cpu = {k: (cpu1[k] - cpu0[k]) / elapsed for k in pids}
            steady["broker_cpu_share"] = cpu["broker"]
            steady["real_device_cpu_share"] = {n: cpu[n] for n in plant.real}
            steady["real_device_fps"] = {n: round((parts1[n] - parts0[n]) / elapsed, 1) for n in plant.real}
            print("steady state: " + ", ".join(f"{k} {v:.0f}" for k, v in steady.items() if isinstance(v, float)
                                               and k.endswith("per_s"))
                  + f"; broker CPU {cpu['broker']:.0%}; real devices: "
                  + ", ".join(f"{n} {steady['real_device_fps'].get(n)} fps, CPU {cpu[n]:.0%}" for n in plant.real))
            status = _fleet_status(plant.broker.url, total)
            rollout = _rollout(plant, root)
            counter.close()
        finally:
            sim = plant.stop()
    if sim.get("seconds"):  # what the simulator managed, beside what it was asked for (it is one Python process)
        sim["events_per_s"] = sim["events"] / sim["seconds"]
        sim["offered_events_per_s"] = (total - real) * sim_rate
        print(f"simulator: {sim['events_per_s']:.0f} of {sim['offered_events_per_s']:.0f} inspection events/s offered")
    return {"devices": total, "real_devices": real, "real_fps_requested": fps, "sim_parts_per_s": sim_rate,
            "window_s": window, "announce_s": online_s, "steady": steady, "fleet_status": status, "rollout": rollout,
            "simulator": sim}


def _parts(plant: Plant) -> dict[str, int]:
    """Each real device's parts_inspected counter, from its local HTTP /api/status."""
    import urllib.request

    out = {}
    for name in plant.real:
        port = int((plant.root / name / "state" / "http.port").read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=10) as r:
            out[name] = int(json.loads(r.read())["counters"]["parts_inspected"])
    return out


if __name__ == "__main__":
    main()
