"""The real service as a user runs it (`smartstock run` in a subprocess) on the real exported defect
model: exact bookings for a known number of parts, HTTP endpoints, systemd notify, a source that
disappears and returns, SIGTERM, and SIGKILL at random moments never corrupting the store."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.samples import write_parts
from tests.conftest import service_port, wait_until

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
[device]
device_id = "test-cam"
[source]
stall_timeout_s = 1.0
backoff_max_s = 1.0
[inspection]
sku = "PCB-T"
queue_size = 8
snapshot_max_mb = 5
[forecast]
refresh_interval_s = 3600
[alerts]
camera_down_after_s = 2.0
[http]
port = 0
"""


@pytest.fixture(scope="module")
def model_file(request) -> Path:
    folder = Path(request.getfixturevalue("defect_model_dir"))
    onnx = sorted(folder.glob("*.onnx"))
    assert onnx, f"no .onnx model in {folder}"
    return onnx[0]


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("parts") / "line"
    write_parts(folder, 20, size=96, defect_rate=0.3, seed=1)
    return folder


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMARTSTOCK_", "NOTIFY_", "WATCHDOG_"))}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def _start(tmp_path: Path, model: Path, state: Path, *args: str, **env: str) -> subprocess.Popen:
    cfg = tmp_path / "smartstock.toml"
    cfg.write_text(CONFIG)
    log = open(tmp_path / f"service-{time.monotonic_ns()}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "smartstock", "run", "--config", str(cfg), "--model", str(model),
                             "--state-dir", str(state), *args], stdout=log, stderr=subprocess.STDOUT,
                            env=_env(tmp_path, **env), cwd=tmp_path)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _count(state: Path, sql: str) -> int:
    conn = sqlite3.connect(state / "smartstock.sqlite", timeout=10)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def _count_soon(state: Path, sql: str) -> int:
    """_count while the service may still be creating the store (no file or no schema yet = 0)."""
    if not (state / "smartstock.sqlite").exists():
        return 0
    try:
        return _count(state, sql)
    except sqlite3.OperationalError:
        return 0


def _stock(state: Path, sku: str) -> dict:
    p = subprocess.run([sys.executable, "-m", "smartstock", "stock", "--json", "--state-dir", str(state)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT, env=_env(state))
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    rows = data if isinstance(data, list) else data.get("skus", data.get("stock", data))
    if isinstance(rows, dict):
        return rows[sku]
    return next(r for r in rows if r.get("sku") == sku)


def test_known_number_of_parts_books_exactly_that_many(tmp_path, model_file, parts):
    state = tmp_path / "state"
    sock_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_path))
    notify.settimeout(0.2)
    n = 45  # more than the folder holds: the looping replay goes round more than twice
    proc = _start(tmp_path, model_file, state, "--source", str(parts), "--loop", "--fps", "15", "--max-frames", str(n),
                  NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="1000000")
    try:
        port = service_port(state, proc)
        code, body = _get(port, "/healthz")
        assert (code, body.strip()) == (200, "ok")
        wait_until(lambda: _count_soon(state, "SELECT COUNT(*) FROM inspections") >= 5, what="first inspections")
        code, metrics = _get(port, "/metrics")
        assert code == 200 and 'smartstock_parts_inspected_total{device_id="test-cam"}' in metrics
        assert "smartstock_latency_seconds" in metrics and "smartstock_outbox_rows" in metrics
        code, body = _get(port, "/api/status")
        status = json.loads(body)
        assert status["camera"]["status"] == "ok" and status["model"]["id"] and status["sku"] == "PCB-T"
        assert status["counters"]["parts_inspected"] >= 5 and "PCB-T" in status["stock"]
        code, body = _get(port, "/api/recent?limit=3")
        assert code == 200 and len(json.loads(body)["inspections"]) == 3
        assert _get(port, "/snapshots/..%2f..%2fsmartstock.sqlite")[0] == 404
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    msgs = []
    while True:
        try:
            msgs.append(notify.recv(4096).decode())
        except (socket.timeout, BlockingIOError):
            break
    notify.close()
    assert msgs and msgs[0].startswith("READY=1") and "WATCHDOG=1" in msgs and msgs[-1] == "STOPPING=1"
    assert _count(state, "SELECT COUNT(*) FROM inspections") == n
    assert _count(state, "SELECT COUNT(*) FROM stock_movements WHERE ref IN (SELECT event_id FROM inspections)") == n
    stock = _stock(state, "PCB-T")
    assert stock["produced"] + stock["scrapped"] == n
    assert _count(state, "SELECT COUNT(*) FROM outbox WHERE topic LIKE '%/events/inspection'") == n


class SystemdHarness:
    """Plays systemd's side of sd_notify: a NOTIFY_SOCKET that records every message (with its time) and
    a watchdog that, like systemd with WatchdogSec=, sends SIGABRT when WATCHDOG=1 is late."""

    def __init__(self, path: Path, watchdog_s: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.path, self.watchdog_s = path, watchdog_s
        self.messages: list[tuple[float, str]] = []
        self.aborted_at: float | None = None
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path), "WATCHDOG_USEC": str(int(self.watchdog_s * 1e6))}

    def watch(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self._thread.start()

    def _run(self) -> None:
        last_ping = None
        while not self._stop.is_set():
            try:
                msg = self.sock.recv(4096).decode()
                now = time.monotonic()
                self.messages.append((now, msg))
                if "WATCHDOG=1" in msg.split("\n") or msg.startswith("READY=1"):
                    last_ping = now
                if msg == "STOPPING=1":
                    last_ping = None  # systemd stops watching a unit that is stopping
            except (socket.timeout, BlockingIOError):
                pass
            if last_ping is not None and time.monotonic() - last_ping > self.watchdog_s and self.aborted_at is None:
                self.aborted_at = time.monotonic()
                if self.proc is not None and self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGABRT)

    def status_times(self, match: Callable[[str], bool]) -> list[float]:
        """When a STATUS= line whose text satisfies `match` arrived."""
        return [t for t, m in self.messages if any(ln.startswith("STATUS=") and match(ln[7:]) for ln in m.split("\n"))]

    def pings_between(self, start: float, end: float) -> int:
        return sum(1 for t, m in self.messages if start <= t <= end and m == "WATCHDOG=1")

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.sock.close()


def test_source_that_disappears_is_reopened_and_sigterm_exits_cleanly(tmp_path, model_file, parts):
    """Also under a systemd watchdog: an outage longer than WatchdogSec keeps WATCHDOG=1 coming (the
    camera goes to STATUS= and the camera_down alert), so systemd does not restart the service."""
    state = tmp_path / "state"
    folder = tmp_path / "cam"
    shutil.copytree(parts, folder)
    systemd = SystemdHarness(tmp_path / "notify.sock", watchdog_s=3.0)
    proc = _start(tmp_path, model_file, state, "--source", str(folder), "--loop", "--fps", "20", **systemd.env())
    systemd.watch(proc)
    try:
        port = service_port(state, proc)
        wait_until(lambda: _count_soon(state, "SELECT COUNT(*) FROM inspections") >= 3, what="first inspections")
        folder.rename(tmp_path / "cam-unplugged")
        code, body = wait_until(lambda: (r := _get(port, "/healthz"))[0] == 503 and r, what="503 from /healthz")
        assert "camera" in body and ("reconnecting" in body or "down" in body)
        status = json.loads(_get(port, "/api/status")[1])
        assert status["camera"]["status"] in ("reconnecting", "down") and not status["healthy"]
        wait_until(lambda: any(a["kind"] == "camera_down" for a in json.loads(_get(port, "/api/status")[1])["alerts"]),
                  what="camera_down alert")
        assert proc.poll() is None, "the service stays up while the camera is gone"
        assert _get(port, "/livez")[0] == 200  # the container health check: alive, no restart
        gone = systemd.status_times(lambda text: text.startswith("camera "))
        assert gone, systemd.messages  # the camera's state is on STATUS= for `systemctl status`
        wait_until(lambda: time.monotonic() - gone[0] > 2 * systemd.watchdog_s, what="an outage over WatchdogSec")
        assert proc.poll() is None and systemd.aborted_at is None, "the watchdog went quiet during the outage"
        before = _count(state, "SELECT COUNT(*) FROM inspections")
        (tmp_path / "cam-unplugged").rename(folder)
        wait_until(lambda: _get(port, "/healthz")[0] == 200, what="recovery")
        back = wait_until(lambda: [t for t in systemd.status_times(lambda text: text == "ok") if t > gone[0]],
                         what="STATUS=ok again")[0]
        assert systemd.pings_between(gone[0], back) >= 2
        wait_until(lambda: _count(state, "SELECT COUNT(*) FROM inspections") > before + 3, what="inspections resume")
        wait_until(lambda: not any(a["kind"] == "camera_down" for a in json.loads(_get(port, "/api/status")[1])["alerts"]),
                  what="camera_down alert cleared")
        assert json.loads(_get(port, "/api/status")[1])["counters"]["source_reopens"] >= 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0  # a hang guard, not a timing assertion
        assert systemd.aborted_at is None
    finally:
        systemd.close()
        if proc.poll() is None:
            proc.kill()
    n = _count(state, "SELECT COUNT(*) FROM inspections")
    assert _count(state, "SELECT COUNT(*) FROM stock_movements") == n
    log = "".join(p.read_text() for p in tmp_path.glob("service-*.log"))
    assert "reconnecting" in log and "reopened" in log and "stopped" in log
    assert log.count("camera ok -> reconnecting") == 1  # logged once per state change, not per frame


def test_sigkill_at_random_moments_never_corrupts_or_loses(tmp_path, model_file, parts):
    state = tmp_path / "state"
    rng = random.Random(5)
    seen = 0
    for _ in range(3):
        proc = _start(tmp_path, model_file, state, "--source", str(parts), "--loop", "--http-port", "0")
        try:
            wait_until(lambda: _count_soon(state, "SELECT COUNT(*) FROM inspections") > seen, timeout=60,
                      what="inspections")
            time.sleep(rng.uniform(0.05, 1.5))
        finally:
            proc.kill()
            proc.wait(10)
        conn = sqlite3.connect(state / "smartstock.sqlite")
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            n = conn.execute("SELECT COUNT(*) FROM inspections").fetchone()[0]
            moves = conn.execute("SELECT COUNT(*) FROM stock_movements").fetchone()[0]
            linked = conn.execute("SELECT COUNT(*) FROM inspections i JOIN stock_movements m ON m.ref = i.event_id "
                                  "JOIN outbox o ON json_extract(CAST(o.payload AS TEXT), '$.event_id') = i.event_id").fetchone()[0]
        finally:
            conn.close()
        assert n == moves == linked, (n, moves, linked)
        assert n > seen, "every earlier committed inspection is still there and the new run added more"
        seen = n
