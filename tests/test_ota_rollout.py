"""Staged rollouts (`smartstock ota rollout`) against three real `smartstock run` devices and a real mosquitto.

The devices (cam-a, cam-b, cam-c, all in group hall-a; cam-a sorts first, so it is the canary) run for
the whole module; each test rolls out a higher release:
1. a good release: canary, then one device per batch, each committed before the next is offered it;
   then it is retained on the group topic and the devices' own topics are cleared;
2. a release that fails its golden samples: the canary refuses it, the rollout pauses naming the canary
   and the reason, the other devices never see it; `abort` ends it and `resume` is refused after;
3. a rollout stopped (SIGTERM) after its canary: `resume` in another invocation finishes it;
4. a device that is offline when its batch comes is skipped, and installs the release from the group
   topic when it comes back.
The pure parts (batch plan, verdicts on hostile or stale model states) are checked without a broker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smartstock.ota.rollout import (
    DeviceProgress, announced_groups, compact, parse_batch, parse_topic, plan, verdict,
)
from smartstock.ota.sign import sign_model
from tests.conftest import ROOT, service_port, stop_service, wait_until
from tests.fixtures.broker import Broker, Probe, free_port
from tests.fixtures.ota import fleet_device_config, frame_folder, make_model_dir, technician_key

GROUP = "hall-a"
NAMES = ("cam-a", "cam-b", "cam-c")


class Plant:
    """One broker, one signing key, three devices in GROUP serving release 1 of the tiny model."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.broker = Broker(root / "broker").start()
        self.key, keyring = technician_key(root)
        shipped = make_model_dir(root / "shipped", release=1)
        src = frame_folder(root / "frames", 40)
        self.procs: dict[str, subprocess.Popen] = {}
        self.cmds: dict[str, list[str]] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTSTOCK_")}
        for name in NAMES:
            d = root / name
            config = fleet_device_config(d, name, line="l1", groups=[GROUP, "all-cams"], model=shipped, keyring=keyring,
                                         trial_frames=20)
            cmd = [sys.executable, "-m", "smartstock", "run", "--config", str(config), "--source", str(src),
                   "--loop", "--fps", "10", "--state-dir", str(d / "state"), "--mqtt", self.broker.url,
                   "--http-port", "0"]
            self.cmds[name] = cmd
            self.start(name)
        for name in NAMES:
            service_port(root / name / "state", self.procs[name], root / name / "service.log")

    def start(self, name: str) -> None:
        (self.root / name / "state" / "http.port").unlink(missing_ok=True)
        self.procs[name] = subprocess.Popen(self.cmds[name], cwd=ROOT, env=self.env,
                                            stdout=open(self.root / name / "service.log", "ab"), stderr=subprocess.STDOUT)

    def base(self, name: str) -> str:
        return f"smartstock/plant/l1/{name}"

    def release(self, n: int, **kw) -> tuple[Path, Path, str]:
        """(envelope, model file, sha256) of release `n`, signed for GROUP."""
        model = make_model_dir(self.root / f"r{n}", release=n, bias=(10.0 + n / 10, -10.0 - n / 10), **kw)
        env, rel = sign_model(model, release=n, key=self.key, key_id="tech", groups=[GROUP])
        path = self.root / f"r{n}.envelope.json"
        path.write_bytes(env.to_json())
        return path, model, rel.artifact.sha256

    def retained(self, topic: str) -> bytes | None:
        p = Probe(self.broker.port, topic)
        try:
            time.sleep(0.5)  # retained messages follow the subscription's acknowledgement at once
            msgs = [m for m in p.on(topic) if m.retain]
            return bytes(msgs[0].payload) if msgs else None
        finally:
            p.close()

    def stop(self) -> None:
        for p in self.procs.values():
            stop_service(p)
        self.broker.stop()


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    p = Plant(tmp_path_factory.mktemp("plant"))
    # every device has announced its groups (retained state) and serves release 1
    probe = Probe(p.broker.port, "smartstock/+/+/+/state")
    try:
        probe.wait_for(lambda m: GROUP in json.loads(m.payload).get("groups", []), timeout=60, count=len(NAMES))
    finally:
        probe.close()
    yield p
    p.stop()


def model_states(probe: Probe, sha: str) -> list[tuple[str, str]]:
    """(device, status) of every live model/state about artifact `sha`, in arrival order."""
    out = []
    for m in list(probe.messages):
        if m.retain or not m.topic.endswith("/model/state"):
            continue
        st = json.loads(m.payload)["models"]["defect-classifier"]
        if st.get("step_sha256") == sha or st.get("installed_sha256") == sha:
            out.append((m.topic.split("/")[3], st["status"]))
    return out


def test_canary_then_batches_complete_and_the_group_topic_keeps_the_release(plant, cli, tmp_path):
    envelope, model, sha = plant.release(2)
    probe = Probe(plant.broker.port, "smartstock/+/+/+/model/state")
    try:
        r = cli("ota", "rollout", envelope, "--group", GROUP, "--artifact", model, "--canary", "1", "--batch", "1",
                "--batch-timeout", "120", "--url", plant.broker.url, "--state-dir", tmp_path, timeout=300)
        assert r.rc == 0, r.out + r.err
        steps = model_states(probe, sha)
        # each device's own envelope was cleared once it had committed: an empty retained message, which the
        # devices ignore (it is not a malformed envelope to refuse)
        wait_until(lambda: all(plant.retained(f"{plant.base(n)}/model/desired") is None for n in NAMES), 10,
                   "the devices' own envelopes to be cleared")
        time.sleep(1.0)
        refusals = [m.topic for m in probe.messages if json.loads(m.payload)["status"] == "refused"]
        assert not refusals, refusals
    finally:
        probe.close()
    assert "canary: 1 device(s)" in r.out and "batch 2/2" in r.out and "completed: 3 committed" in r.out, r.out
    # staged: each device was offered the release only after the one before it had committed it
    firsts = [next(i for i, (dev, _) in enumerate(steps) if dev == name) for name in NAMES]
    commits = [next(i for i, s in enumerate(steps) if s == (name, "committed")) for name in NAMES]
    assert commits[0] < firsts[1] and commits[1] < firsts[2], steps
    state = json.loads((tmp_path / f"rollout-{GROUP}.json").read_text())
    assert state["status"] == "completed" and state["group_published"] is True
    assert {d["status"] for d in state["devices"].values()} == {"committed"}
    # devices that come online later find the release on the group topic; the per-device copies are gone
    assert plant.retained(f"smartstock/groups/{GROUP}/model/desired") == envelope.read_bytes()
    assert plant.retained(f"smartstock/groups/{GROUP}/model/artifact/{sha}") == model.read_bytes()
    st = cli("ota", "rollout", "status", "--group", GROUP, "--url", plant.broker.url, "--state-dir", tmp_path)
    assert st.rc == 0 and "completed" in st.out and st.out.count("committed") >= 3, st.out


def test_a_refusing_canary_pauses_the_rollout_before_any_other_device_sees_it(plant, cli, tmp_path):
    # a model that does not reproduce its own golden samples: every device would refuse it
    envelope, model, sha = plant.release(3, golden_from=make_model_dir(plant.root / "other", bias=(0.0, 0.0)))
    probe = Probe(plant.broker.port, "smartstock/+/+/+/model/state")
    try:
        r = cli("ota", "rollout", envelope, "--group", GROUP, "--artifact", model, "--batch", "50%",
                "--batch-timeout", "120", "--url", plant.broker.url, "--state-dir", tmp_path, timeout=300)
        assert r.rc == 7, r.out + r.err
        assert "paused" in r.err and "cam-a" in r.err and "golden_failed" in r.err, r.err
        steps = model_states(probe, sha)
    finally:
        probe.close()
    assert ("cam-a", "refused") in steps and {dev for dev, _ in steps} == {"cam-a"}, steps
    for name in ("cam-b", "cam-c"):
        assert plant.retained(f"{plant.base(name)}/model/desired") is None
    assert plant.retained(f"smartstock/groups/{GROUP}/model/desired") != envelope.read_bytes()

    st = cli("ota", "rollout", "status", "--group", GROUP, "--url", plant.broker.url, "--state-dir", tmp_path)
    assert st.rc == 7 and "paused" in st.out and "golden_failed" in st.out, st.out
    again = cli("ota", "rollout", envelope, "--group", GROUP, "--artifact", model, "--url", plant.broker.url,
                "--state-dir", tmp_path)
    assert again.rc == 2 and "resume or abort" in again.err, again.err
    ab = cli("ota", "rollout", "abort", "--group", GROUP, "--url", plant.broker.url, "--state-dir", tmp_path)
    assert ab.rc == 0, ab.out + ab.err
    state = json.loads((tmp_path / f"rollout-{GROUP}.json").read_text())
    assert state["status"] == "aborted"
    assert state["devices"][plant.base("cam-a")]["status"] == "failed"
    assert {state["devices"][plant.base(n)]["status"] for n in ("cam-b", "cam-c")} == {"skipped"}
    res = cli("ota", "rollout", "resume", "--group", GROUP, "--url", plant.broker.url, "--state-dir", tmp_path)
    assert res.rc == 2 and "aborted" in res.err, res.err


def test_resume_finishes_a_rollout_stopped_after_its_canary(plant, cli, tmp_path):
    envelope, model, sha = plant.release(4)
    cmd = [sys.executable, "-m", "smartstock", "ota", "rollout", str(envelope), "--group", GROUP, "--artifact",
           str(model), "--batch", "1", "--batch-timeout", "60", "--url", plant.broker.url, "--state-dir", str(tmp_path)]
    probe = Probe(plant.broker.port, f"{plant.base('cam-b')}/model/state")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = tmp_path / f"rollout-{GROUP}.json"
    try:
        # stopped once the second device has been sent the release, before it answers
        wait_until(lambda: path.exists() and json.loads(path.read_text())["devices"][plant.base("cam-b")]["status"]
                   == "published", 120, "the canary to commit and cam-b to be sent the release")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        # cam-b commits while no rollout is watching: resume must take that from its retained model/state
        probe.wait_for(lambda m: json.loads(m.payload)["models"]["defect-classifier"].get("installed_sha256") == sha,
                       timeout=120)
    finally:
        probe.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    state = json.loads(path.read_text())
    assert state["status"] == "interrupted" and state["devices"][plant.base("cam-a")]["status"] == "committed", state
    assert state["devices"][plant.base("cam-c")]["status"] == "pending" and state["group_published"] is False, state

    r = cli("ota", "rollout", "resume", "--group", GROUP, "--url", plant.broker.url, "--state-dir", tmp_path, timeout=300)
    assert r.rc == 0, r.out + r.err
    assert "resuming" in r.out and "cam-b committed" in r.out and "completed: 3 committed" in r.out, r.out
    state = json.loads(path.read_text())
    assert state["status"] == "completed" and {d["status"] for d in state["devices"].values()} == {"committed"}
    assert plant.retained(f"smartstock/groups/{GROUP}/model/desired") == envelope.read_bytes()


def test_an_offline_device_is_skipped_and_installs_from_the_group_topic_when_back(plant, cli, tmp_path):
    envelope, model, sha = plant.release(5)
    stop_service(plant.procs["cam-c"])  # a clean stop publishes `offline`
    probe = Probe(plant.broker.port, f"{plant.base('cam-c')}/model/state")
    try:
        r = cli("ota", "rollout", envelope, "--group", GROUP, "--artifact", model, "--batch", "1",
                "--batch-timeout", "120", "--url", plant.broker.url, "--state-dir", tmp_path, timeout=300)
        assert r.rc == 0, r.out + r.err
        assert "cam-c is offline, skipped" in r.out and "completed: 2 committed, 0 failed, 1 skipped" in r.out, r.out
        plant.start("cam-c")
        service_port(plant.root / "cam-c" / "state", plant.procs["cam-c"], plant.root / "cam-c" / "service.log")
        probe.wait_for(lambda m: json.loads(m.payload)["models"]["defect-classifier"].get("installed_sha256") == sha,
                       timeout=120)
    finally:
        probe.close()
    state = json.loads((tmp_path / f"rollout-{GROUP}.json").read_text())
    assert state["devices"][plant.base("cam-c")]["status"] == "skipped"
    assert state["devices"][plant.base("cam-c")]["published_at"] is None  # never sent on its own topic


def test_rollout_mistakes_are_errors_that_say_what_to_do(cli, tmp_path, broker):
    key, _keyring = technician_key(tmp_path)
    model = make_model_dir(tmp_path / "r2", release=2)
    env, _ = sign_model(model, release=2, key=key, key_id="tech", devices=["cam7"])
    for_device = tmp_path / "device.json"
    for_device.write_bytes(env.to_json())
    env, _ = sign_model(model, release=2, key=key, key_id="tech", groups=[GROUP])
    for_group = tmp_path / "group.json"
    for_group.write_bytes(env.to_json())
    common = ["--url", broker.url, "--state-dir", tmp_path, "--discover-timeout", "1"]

    r = cli("ota", "rollout", for_device, "--group", GROUP, "--artifact", model, *common)
    assert r.rc == 2 and "not group 'hall-a'" in r.err and "--group hall-a" in r.err, r.err
    r = cli("ota", "rollout", for_group, "--group", GROUP, "--artifact", model, *common)
    assert r.rc == 2 and "no device of group 'hall-a'" in r.err, r.err
    assert not (tmp_path / f"rollout-{GROUP}.json").exists()
    r = cli("ota", "rollout", for_group, "--group", GROUP, "--artifact", model, "--batch", "0%", *common)
    assert r.rc == 2 and "--batch '0%'" in r.err, r.err
    r = cli("ota", "rollout", for_group, "--group", "a/b", "--artifact", model, *common)
    assert r.rc == 2 and "not a valid MQTT topic level" in r.err, r.err
    r = cli("ota", "rollout", for_group, "--group", GROUP, "--artifact", model, "--prefix", "smartstock/#", *common)
    assert r.rc == 2 and "--prefix 'smartstock/#' is not a topic prefix" in r.err, r.err  # no wildcard subscribed
    for action in ("status", "resume", "abort"):
        r = cli("ota", "rollout", action, "--group", GROUP, *common)
        assert r.rc == 2 and "no rollout state" in r.err and "Traceback" not in r.err, (action, r.err)
    r = cli("ota", "rollout", for_group, "--group", GROUP, "--artifact", model, "--url", f"mqtt://127.0.0.1:{free_port()}",
            "--state-dir", tmp_path)
    assert r.rc == 8 and "cannot reach the MQTT broker" in r.err and "Traceback" not in r.err, r.err
    (tmp_path / f"rollout-{GROUP}.json").write_text('{"v": 1, "group": 5}')
    r = cli("ota", "rollout", "status", "--group", GROUP, *common)
    assert r.rc == 2 and "rollout state field" in r.err, r.err


# -- the pure parts ------------------------------------------------------------------------------
def _devices(n: int) -> list[DeviceProgress]:
    return [DeviceProgress(device_id=f"d{i:03d}", site="s", line="l", batch=0) for i in range(n)]


def test_plan_canaries_first_then_batches_sized_from_the_whole_group():
    batches = plan(_devices(10), 2, "25%")
    assert [len(b) for b in batches] == [2, 3, 3, 2]
    assert [d.device_id for d in batches[0]] == ["d000", "d001"]
    assert [len(b) for b in plan(_devices(5), 0, "2")] == [2, 2, 1]
    assert [len(b) for b in plan(_devices(1), 3, "50%")] == [1]
    for bad in ("0", "0%", "150%", "x", "2.5", "-1"):
        with pytest.raises(Exception, match="--batch"):
            parse_batch(bad)


def test_broker_input_is_validated_not_trusted():
    assert parse_topic("smartstock", "smartstock/p/l/cam1/model/state") == ("p", "l", "cam1", "model/state")
    assert parse_topic("smartstock", "smartstock/p/l/cam1/status") == ("p", "l", "cam1", "status")
    for junk in ("smartstock/groups/g/x/state", "smartstock/p/l/../state", "smartstock/p/l/cam1/cmd/x",
                 "other/p/l/cam1/state", "smartstock/p/l/c a/state"):
        assert parse_topic("smartstock", junk) is None, junk
    assert announced_groups({"groups": ["a", "b/c", 5, "#"]}) == ["a"]
    assert announced_groups({"groups": ["g"] * 1000}) is None and announced_groups([1]) is None
    assert announced_groups({"version": "old"}) is None
    # what a rollout keeps of each device's message is small whatever the broker sends
    sha = "c" * 64
    huge = {"models": {"defect-classifier": {"status": "x" * 10_000, "detail": {"nested": [1]}, "installed_sha256": sha,
                                             "junk": "y" * 1000}, **{f"k{i}": {"status": "s"} for i in range(100)}},
            "other": "z" * 100_000}
    kept = compact("smartstock/p/l/d/model/state", huge)
    assert len(kept["models"]) == 4
    assert kept["models"]["defect-classifier"] == {"status": "x" * 400, "installed_sha256": sha}
    assert compact("smartstock/p/l/d/state", {"groups": ["a"], "recent": [1] * 1000}) == {"groups": ["a"]}


def test_verdicts_name_this_release_only():
    sha, other = "a" * 64, "b" * 64

    def st(**kw):
        return {"models": {"defect-classifier": kw}}

    assert verdict(st(installed_sha256=sha, installed_version="2", status="committed"), "defect-classifier", sha, None)[0] \
        == "committed"
    refused = st(status="refused", error="golden_failed", detail="x", step_sha256=sha, updated_at="t2")
    assert verdict(refused, "defect-classifier", sha, "t1") == ("failed", "refused (golden_failed): x")
    # someone else's junk, or a refusal of another release, does not pause this rollout
    assert verdict(st(status="refused", error="malformed", step_sha256=None, updated_at="t2"), "defect-classifier",
                   sha, "t1") is None
    assert verdict(st(status="rolled_back", step_sha256=other, updated_at="t2"), "defect-classifier", sha, "t1") is None
    # a device that predates step_sha256: a refusal after the release was published counts, an older one does not
    assert verdict(st(status="refused", updated_at="t1"), "defect-classifier", sha, "t1") is None
    assert verdict(st(status="refused", updated_at="t2"), "defect-classifier", sha, "t1")[0] == "failed"
    assert verdict(st(status="trial", step_sha256=sha), "defect-classifier", sha, None) is None
    assert verdict({"models": "junk"}, "defect-classifier", sha, None) is None
    assert verdict(st(status="disabled"), "defect-classifier", sha, None)[0] == "failed"
