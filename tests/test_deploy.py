"""Deployment files: the systemd unit (and its CSI drop-in) verifies cleanly with a low exposure score,
the Jetson Dockerfile follows the rules of issue 19, the README documents a complete `docker run`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "smartstock.service"
DOCKERFILE = ROOT / "Dockerfile.jetson"
CSI_DROPIN = ROOT / "systemd" / "smartstock-csi.conf"
README = ROOT / "README.md"


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


def _verify_exe() -> Path:
    # the unit runs /opt/smartstock/venv/bin/smartstock; point it at this checkout's script for verify
    exe = Path(sys.executable).with_name("smartstock")
    if not exe.exists():
        pytest.skip(f"{exe} not installed (pip install -e .)")
    return exe


def _unit_copy(folder: Path, *, csi: bool = False) -> Path:
    """The unit (and with `csi`, its CSI drop-in) in `folder`, as systemd would find them there."""
    unit = folder / "smartstock.service"
    unit.write_text(UNIT.read_text().replace("/opt/smartstock/venv/bin/smartstock", str(_verify_exe())))
    if csi:
        (folder / "smartstock.service.d").mkdir()
        (folder / "smartstock.service.d" / "csi.conf").write_text(CSI_DROPIN.read_text())
    return unit


@pytest.mark.parametrize("csi", [False, True], ids=["unit", "unit+csi-drop-in"])
def test_unit_verifies_without_any_output(tmp_path, csi):
    tool = _systemd_analyze()
    if tool is None:
        pytest.skip("systemd-analyze is not installed and could not be installed (needs root and apt-get)")
    unit = _unit_copy(tmp_path, csi=csi)
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"}  # trailing ':' keeps the built-in paths too
    p = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0 and p.stdout.strip() == "" and p.stderr.strip() == "", p.stdout + p.stderr


def test_unit_exposure_score(tmp_path):
    """`systemd-analyze security` (offline, systemd >= 250): printed, and at most 2.0 (it was 3.5)."""
    tool = _systemd_analyze()
    if tool is None:
        pytest.skip("systemd-analyze is not installed and could not be installed (needs root and apt-get)")
    version = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30).stdout.split()
    if len(version) < 2 or not version[1].isdigit() or int(version[1]) < 250:
        pytest.skip(f"systemd {version[1] if len(version) > 1 else '?'} has no `security --offline` (needs 250+)")
    unit = _unit_copy(tmp_path)
    p = subprocess.run([tool, "security", "--offline=yes", "--no-pager", str(unit)], capture_output=True, text=True,
                       timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", p.stdout + p.stderr)
    assert m, p.stdout[-2000:] + p.stderr
    score = float(m.group(1))
    print(f"systemd-analyze security: exposure {score} for systemd/smartstock.service")
    assert score <= 2.0, p.stdout[-4000:]


def test_unit_has_notify_watchdog_user_and_hardening():
    s = _unit_settings(UNIT.read_text())
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"]
    assert int(s["WatchdogSec"][0]) > 0
    assert s["User"] == ["smartstock"] and "video" in s["SupplementaryGroups"][0].split()
    assert s["StateDirectory"] == ["smartstock"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateMounts", "RemoveIPC"):
        assert s[key] == ["yes"], key
    assert s["ProtectSystem"] == ["strict"] and s["ProtectProc"] == ["invisible"]
    assert s["SystemCallFilter"] == ["@system-service"] and s["SystemCallErrorNumber"] == ["EPERM"]
    allowed = " ".join(s["DeviceAllow"])
    assert "video4linux" in allowed and "nvhost" in allowed and "nvmap" in allowed
    for node in ("/dev/nvgpu/igpu0/ctrl", "/dev/host1x-fence", "/dev/nvsciipc", "/dev/nvmap"):  # JetPack 6
        assert node in allowed, node
    assert s.get("PrivateDevices", ["no"]) == ["no"]  # PrivateDevices=yes would hide cameras and the GPU
    assert (ROOT / "systemd" / "smartstock.env.example").is_file()
    # HOME under the state directory (ProtectHome hides /home), caches in CacheDirectory=
    env = dict(kv.split("=", 1) for line in s["Environment"] for kv in line.split())
    assert env["HOME"] == "%S/smartstock" and env["XDG_CACHE_HOME"] == "%C/smartstock"
    assert s["CacheDirectory"] == ["smartstock"]


def test_csi_drop_in_brings_the_argus_socket_into_private_tmp():
    unit, csi = _unit_settings(UNIT.read_text()), _unit_settings(CSI_DROPIN.read_text())
    assert unit["PrivateTmp"] == ["yes"]
    assert csi["BindPaths"] == ["/tmp/argus_socket"] or csi.get("PrivateTmp") == ["no"]
    assert "nvargus-daemon.service" in csi["After"] and "nvargus-daemon.service" in csi["PartOf"]


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _steps(ins: list[tuple[str, str]]) -> list[str]:
    """Every shell step of every RUN, in build order (`a && b` is two steps)."""
    return [step.strip() for k, r in ins if k == "RUN" for step in r.split("&&")]


def _args(ins: list[tuple[str, str]]) -> dict[str, str]:
    return dict(r.split("=", 1) for k, r in ins if k == "ARG" and "=" in r)


def test_dockerfile_jetson_base_user_health_and_entrypoint():
    ins = _instructions(DOCKERFILE.read_text())
    froms = [r for k, r in ins if k == "FROM"]
    assert froms and all(re.match(r"nvcr\.io/nvidia/l4t-(jetpack|base|cuda):r?\d", f) for f in froms), froms
    assert "r36." in froms[-1] or "12.6" in froms[-1], "JetPack 6 / L4T r36 base"
    users = [r for k, r in ins if k == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0"), "the container must not run as root"
    health = [r for k, r in ins if k == "HEALTHCHECK"]
    assert health and "edge.healthcheck" in health[-1], "health check on /livez that can restart (edge/healthcheck.py)"
    assert any(k == "VOLUME" and "/var/lib/smartstock" in r for k, r in ins)
    entry = " ".join(r for k, r in ins if k in ("ENTRYPOINT", "CMD"))
    assert "smartstock" in entry and '"run"' in entry and "/dev/video0" not in entry
    # the package is installed into the venv, away from models/: the image must say where the shipped models are
    workdir = [r for k, r in ins if k == "WORKDIR"][-1]
    assert any(k == "COPY" and r.split() == ["models", "./models"] for k, r in ins)
    env = " ".join(r for k, r in ins if k == "ENV")
    assert f"SMARTSTOCK_MODELS_DIR={workdir}/models" in env, env
    assert "HOME=/var/lib/smartstock" in env  # GStreamer's registry cache needs a writable HOME


def test_dockerfile_jetson_uses_the_base_image_cv2_and_the_constraints():
    ins = _instructions(DOCKERFILE.read_text())
    steps = _steps(ins)
    text = " ".join(steps).lower()
    assert "python3-opencv" not in text, "a second cv2 (Ubuntu 4.5) beside the base image's NVIDIA build"
    assert "tensorflow" not in text and "[train" not in text
    (project,) = [s for s in steps if "pip install" in s and ".[edge]" in s]
    m = re.search(r"(?:-c|--constraint)[ =](\S+)", project)
    assert m, "the project must be installed under the Jetson constraints: " + project
    constraints = ROOT / m.group(1)
    assert any(k == "COPY" and m.group(1) in r.split() for k, r in ins), "constraints file not copied into the image"
    reqs = {Requirement(ln.split("#")[0]).name: Requirement(ln.split("#")[0]) for ln in constraints.read_text().splitlines()
            if ln.split("#")[0].strip()}
    numpy = reqs["numpy"].specifier
    assert "1.26.4" in numpy and "2.0.0" not in numpy and "2.2.0" not in numpy, "numpy<2 for NVIDIA's cv2"
    uninstall = next(i for i, s in enumerate(steps) if "pip uninstall" in s)
    assert "opencv-python-headless" in steps[uninstall] and steps.index(project) < uninstall
    assert any("cv2.getBuildInformation()" in s and "GStreamer" in s for s in steps), "assert GStreamer at build time"


def test_dockerfile_jetson_onnxruntime_gpu_pinned_from_the_io_index_and_installed_last():
    ins = _instructions(DOCKERFILE.read_text())
    steps, args = _steps(ins), _args(ins)
    assert "jetson-ai-lab.dev" not in DOCKERFILE.read_text(), "the .dev host is gone"
    index = args["JETSON_INDEX"]
    assert re.fullmatch(r"https://pypi\.jetson-ai-lab\.io/jp6/cu126/?", index), index
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["ORT_GPU_VERSION"]), "pin onnxruntime-gpu to one version"
    assert re.fullmatch(r"[0-9a-f]{64}", args["ORT_GPU_SHA256"]), "pin the wheel's sha256 (fill it at release)"
    spec = next(s for s in steps if "onnxruntime-gpu==${ORT_GPU_VERSION}" in s)
    assert "--hash=sha256:${ORT_GPU_SHA256}" in spec
    (gpu,) = [i for i, s in enumerate(steps) if "pip install" in s and "$JETSON_INDEX" in s]
    assert "--require-hashes" in steps[gpu] and "--no-deps" in steps[gpu]
    project = next(i for i, s in enumerate(steps) if "pip install" in s and ".[edge]" in s)
    uninstall = next(i for i, s in enumerate(steps) if "pip uninstall" in s)
    assert project < uninstall < gpu and "onnxruntime" in steps[uninstall].split()
    later = [s for s in steps[gpu + 1:] if re.search(r"pip3? install", s)]
    assert not later, f"a pip install after onnxruntime-gpu could put the CPU build back: {later}"
    check = next((s for s in steps[gpu + 1:] if "get_available_providers" in s), "")
    assert "TensorrtExecutionProvider" in check and "CUDAExecutionProvider" in check, "providers checked at build time"


def _docker_run() -> str:
    """The documented `docker run` command of the README (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", README.read_text())
    runs = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("docker run") and "smartstock:jetson" in ln]
    assert runs, "README documents no `docker run ... smartstock:jetson`"
    return runs[0]


def test_readme_docker_run_has_the_deployment_flags():
    run = _docker_run()
    for flag in ("--runtime nvidia", "-v /tmp/argus_socket:/tmp/argus_socket", "--device-cgroup-rule 'c 81:* rmw'",
                 "/dev/v4l/by-id/", "-p 127.0.0.1:8080:8080", "--env-file", "--init", "--restart unless-stopped",
                 "--log-driver", "--log-opt max-size=", "--log-opt max-file="):
        assert flag in run, f"{flag!r} missing from the README's docker run: {run}"
    assert "--device /dev/video0" not in run, "USB cameras re-enumerate: use /dev/v4l/by-id paths"
    stop = re.search(r"--stop-timeout[ =](\d+)", run)
    drain = int(_unit_settings(UNIT.read_text())["TimeoutStopSec"][0])
    assert stop and int(stop.group(1)) >= drain, "--stop-timeout at least the service's drain time (TimeoutStopSec)"


# -- the container health check (edge/healthcheck.py) -------------------------------------------------
def test_healthcheck_restarts_only_after_failures_in_a_row(tmp_path):
    import signal

    from edge import healthcheck as hc

    counter = tmp_path / "unhealthy"
    got = [hc.check(False, counter, age_s=hc.GRACE_S + 1)[1] for _ in range(hc.KILL_AFTER)]
    assert got[:hc.TERM_AFTER - 1] == [None] * (hc.TERM_AFTER - 1)
    assert got[hc.TERM_AFTER - 1] == signal.SIGTERM and got[-1] == signal.SIGKILL
    assert hc.check(True, counter, age_s=hc.GRACE_S + 1) == (0, None) and not counter.exists()  # one success resets
    assert hc.check(False, counter, age_s=hc.GRACE_S + 1) == (1, None)
    counter.unlink()
    for _ in range(hc.KILL_AFTER + 2):  # model load / TensorRT engine build: not counted
        assert hc.check(False, counter, age_s=10.0) == (0, None)


def test_healthcheck_keys_its_count_to_pid_1s_start(tmp_path):
    from edge import healthcheck as hc

    (tmp_path / "1").mkdir()
    tick = os.sysconf("SC_CLK_TCK")
    fields = ["S"] + ["0"] * 18 + [str(1000 * tick)] + ["0"] * 20  # field 22 (starttime) = 1000 s after boot
    (tmp_path / "1" / "stat").write_text("1 (smart stock) " + " ".join(fields) + "\n")
    (tmp_path / "uptime").write_text("1600.50 3000.00\n")
    start, age = hc.pid1_start_and_age(tmp_path)
    assert start == str(1000 * tick) and abs(age - 600.5) < 1e-6
    real_start, real_age = hc.pid1_start_and_age()  # this machine's /proc parses too
    assert int(real_start) >= 0 and real_age > 0
