"""Shared fixtures. Each area keeps its fixtures in tests/fixtures/<area>.py (listed below)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.cli",
    "tests.fixtures.models",
]

ROOT = Path(__file__).resolve().parents[1]

# Keep test runs quiet and deterministic on 2 cores.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


@pytest.fixture
def store(state_dir: Path):
    from smartstock.store import open_store

    s = open_store(state_dir)
    yield s
    s.close()


def python_subprocess(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, **kw)


def service_port(state: Path, proc: subprocess.Popen, log: Path | None = None, timeout: float = 90.0) -> int:
    """The HTTP port a `smartstock run` child wrote to STATE/http.port; fails with its log if it died."""
    f = state / "http.port"
    tail = (lambda: log.read_text()[-3000:]) if log is not None else (lambda: "")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f.exists() and f.read_text().strip():
            return int(f.read_text())
        assert proc.poll() is None, f"service exited early with {proc.returncode}: {tail()}"
        time.sleep(0.1)
    raise AssertionError(f"service did not write http.port: {tail()}")


def stop_service(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM (the service drains and publishes offline), then SIGKILL if it does not end in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_until(cond, timeout: float = 30.0, what: str = "condition"):
    """Poll `cond` until it returns something true and return that, or fail the test naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for(pred, timeout: float = 20.0) -> bool:
    """Poll `pred` until it is true (True) or `timeout` seconds passed (False): for threads under test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False
