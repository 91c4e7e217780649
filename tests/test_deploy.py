"""Deployment files: the systemd unit verifies cleanly, the Jetson Dockerfile follows the rules."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "smartstock.service"
DOCKERFILE = ROOT / "Dockerfile.jetson"


def _systemd_analyze() -> str | None:
    found = shutil.which("systemd-analyze")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "systemd"], capture_output=True, timeout=300,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which("systemd-analyze")


def _unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


def test_unit_verifies_without_any_output(tmp_path):
    tool = _systemd_analyze()
    if tool is None:
        pytest.skip("systemd-analyze is not installed and could not be installed (needs root and apt-get)")
    # the unit runs /opt/smartstock/venv/bin/smartstock; point it at this checkout's script for verify
    exe = Path(sys.executable).with_name("smartstock")
    if not exe.exists():
        pytest.skip(f"{exe} not installed (pip install -e .)")
    unit = tmp_path / "smartstock.service"
    unit.write_text(UNIT.read_text().replace("/opt/smartstock/venv/bin/smartstock", str(exe)))
    p = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "" and p.stderr.strip() == "", p.stdout + p.stderr


def test_unit_has_notify_watchdog_user_and_hardening():
    s = _unit_settings(UNIT.read_text())
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"]
    assert int(s["WatchdogSec"][0]) > 0
    assert s["User"] == ["smartstock"] and "video" in s["SupplementaryGroups"][0].split()
    assert s["StateDirectory"] == ["smartstock"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert s[key] == ["yes"], key
    assert s["ProtectSystem"] == ["strict"]
    allowed = " ".join(s["DeviceAllow"])
    assert "video4linux" in allowed and "nvhost" in allowed and "nvmap" in allowed
    assert s.get("PrivateDevices", ["no"]) == ["no"]  # PrivateDevices=yes would hide cameras and the GPU
    assert (ROOT / "systemd" / "smartstock.env.example").is_file()


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_jetson_lint():
    ins = _instructions(DOCKERFILE.read_text())
    froms = [r for k, r in ins if k == "FROM"]
    assert len(froms) == 1 and re.match(r"nvcr\.io/nvidia/l4t-(jetpack|base):r36\.\d", froms[0]), froms
    users = [r for k, r in ins if k == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0"), "the container must not run as root"
    assert any(k == "HEALTHCHECK" and "/healthz" in r for k, r in ins)
    assert any(k == "VOLUME" and "/var/lib/smartstock" in r for k, r in ins)
    runs = " ".join(r for k, r in ins if k in ("RUN", "ARG")).lower()
    assert "tensorflow" not in runs and "[train" not in runs and ".[edge]" in runs
    assert "onnxruntime-gpu" in runs and "jetson-ai-lab" in runs
    assert "python3-opencv" in runs  # OpenCV with GStreamer from the base image's packages
    entry = " ".join(r for k, r in ins if k in ("ENTRYPOINT", "CMD"))
    assert "smartstock" in entry and '"run"' in entry
    # the package is installed into the venv, away from models/: the image must say where the shipped models are
    workdir = [r for k, r in ins if k == "WORKDIR"][-1]
    assert any(k == "COPY" and r.split() == ["models", "./models"] for k, r in ins)
    env = " ".join(r for k, r in ins if k == "ENV")
    assert f"SMARTSTOCK_MODELS_DIR={workdir}/models" in env, env
