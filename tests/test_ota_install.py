"""Install, trial, commit, automatic rollback and start-up recovery on real ONNX Runtime models."""

from __future__ import annotations

import json
import os

import pytest

from smartstock.ota.install import Installer
from smartstock.ota.kinds import DefectClassifierKind
from smartstock.ota.refusal import UpdateRefused
from smartstock.ota.report import StateReporter
from smartstock.ota.slots import TrialMarker
from smartstock.ota.trial import TrialLimits, TrialModel, Window, judge
from tests.fixtures.ota import FakeLoop, OtaRig, frames


@pytest.fixture
def rig(tmp_path, store):
    return OtaRig(tmp_path, store)


def restart(rig: OtaRig) -> tuple[Installer, FakeLoop]:
    """A new process on the same state dir: fresh installer, fresh loop."""
    loop = FakeLoop()
    inst = Installer(rig.state_dir, DefectClassifierKind(), StateReporter(rig.store, "t/model/state", "dev1"),
                     swap=loop.swap_classifier, limits=TrialLimits(frames=40))
    loop.swap_classifier(inst.startup(rig.default).model)
    return inst, loop


def statuses(rig: OtaRig) -> list[str]:
    return [h[0] for h in rig.history()]


def test_update_commits_after_a_good_trial_and_no_frame_is_lost(rig):
    rig.run_frames(40, defect_share=0.05)                   # baseline on release 1
    pending = rig.push(rig.model("m2", 2), 2, summary="retrained on week 47")
    slots = rig.installer.slots
    assert slots.target("current") == pending.sha256 and slots.read_trial().state == "trial"
    rig.run_frames(60, defect_share=0.05, seed=3)
    assert rig.serving_release == 2 and rig.installer.trial is None
    assert slots.read_trial().state == "committed" and rig.installer.high_water() == 2
    assert len(rig.loop.results) == 100                       # every frame classified across the swap
    assert statuses(rig) == ["serving", "verifying", "installing", "trial", "committed"]
    state = rig.last_state()
    assert state["installed_version"] == "2" and state["latest_version"] == "2" and state["in_progress"] is False
    assert state["release_summary"] == "retrained on week 47" and state["title"] and state["serving"] == "current"
    # the release folder holds exactly the signed manifest bytes and the model
    d = slots.release_dir(pending.sha256)
    assert (d / "manifest.json").read_bytes() == pending.release.model_manifest_bytes()
    assert sorted(p.name for p in d.iterdir()) == ["defect.onnx", "manifest.json"]


def test_second_update_keeps_previous_and_prunes_older(rig):
    p2 = rig.push(rig.model("m2", 2), 2)
    rig.run_frames(40)
    p3 = rig.push(rig.model("m3", 3), 3)
    rig.run_frames(40)
    p4 = rig.push(rig.model("m4", 4), 4)
    rig.run_frames(40)
    slots = rig.installer.slots
    assert (slots.target("current"), slots.target("previous")) == (p4.sha256, p3.sha256)
    assert sorted(p.name for p in slots.releases.iterdir()) == sorted([p3.sha256, p4.sha256])
    assert not slots.release_dir(p2.sha256).exists()


def test_model_that_passes_goldens_but_fails_the_trial_is_rolled_back(rig):
    rig.run_frames(40, defect_share=0.05)
    old = rig.loop.classifier
    # says "defect" for everything: consistent with its own golden samples, wrong on the line
    pending = rig.push(rig.model("m2", 2, bias=(-10.0, 10.0)), 2)
    rig.run_frames(60, defect_share=0.05, seed=5)
    assert rig.loop.classifier is old and rig.serving_release == 1
    assert len(rig.loop.results) == 100
    state = rig.last_state()
    assert state["status"] == "rolled_back" and state["error"] == "trial_failed"
    assert "defect rate" in state["detail"] and "100.0%" in state["detail"] and state["installed_version"] == "1"
    assert rig.installer.slots.target("current") is None        # back to the shipped default
    assert pending.sha256 in rig.installer.failed()
    assert not rig.installer.slots.release_dir(pending.sha256).exists()
    # the same artifact offered again (e.g. a new envelope) is not retried
    with pytest.raises(UpdateRefused, match="previously_failed"):
        rig.push(rig.model("m2", 2, bias=(-10.0, 10.0)), 2, summary="again")


def test_rollback_returns_to_the_previous_ota_release(rig):
    p2 = rig.push(rig.model("m2", 2), 2)
    rig.run_frames(40)
    rig.push(rig.model("m3", 3, bias=(-10.0, 10.0)), 3)
    rig.run_frames(60, seed=2)
    assert rig.serving_release == 2 and rig.installer.slots.target("current") == p2.sha256
    inst, loop = restart(rig)
    assert loop.classifier.release == 2 and inst.serving.which == "current"


def test_restart_during_trial_rolls_back(rig):
    p2 = rig.push(rig.model("m2", 2), 2)
    rig.push  # the process dies here, mid-trial (nothing committed)
    inst, loop = restart(rig)
    assert loop.classifier.release == 1 and inst.serving.which == "default"
    assert inst.slots.read_trial().state == "rolled_back" and p2.sha256 in inst.failed()
    assert statuses(rig)[-2:] == ["rolled_back", "serving"]
    assert "restarted during the trial" in rig.history()[-2][2]


@pytest.mark.parametrize("damage", ["truncate", "delete", "manifest"])
def test_startup_falls_back_when_current_is_broken(rig, damage):
    p2 = rig.push(rig.model("m2", 2), 2)
    rig.run_frames(40)
    p3 = rig.push(rig.model("m3", 3), 3)
    rig.run_frames(40)
    f = rig.installer.slots.model_file(p3.sha256)
    if damage == "truncate":
        f.write_bytes(f.read_bytes()[:-50])
    elif damage == "delete":
        f.unlink()
    else:
        (f.parent / "manifest.json").write_text("{")
    inst, loop = restart(rig)
    assert loop.classifier.release == 2 and inst.serving.which == "previous"
    state = json.loads(bytes(rig.store.query_one(
        "SELECT payload FROM outbox WHERE topic = 't/model/state' ORDER BY id DESC LIMIT 1")[0]))
    assert state["status"] == "fallback" and state["serving"] == "previous" and state["installed_version"] == "2"
    # and with previous broken as well: the shipped default
    rig.installer.slots.model_file(p2.sha256).write_bytes(b"garbage")
    inst, loop = restart(rig)
    assert loop.classifier.release == 1 and inst.serving.which == "default"


def test_interrupted_trial_marker_from_a_crash_before_the_swap_is_harmless(rig):
    """trial.json written but `current` not moved yet: the restart 'rolls back' to what already served."""
    rig.installer.slots.write_trial(TrialMarker("defect-classifier", "trial", "ab" * 32, 2, None, 1, "now"))
    inst, loop = restart(rig)
    assert loop.classifier.release == 1


def test_trial_model_serves_failed_frames_with_the_old_model():
    class Broken:
        release, model_id = 9, "broken"

        def classify_batch(self, frames):
            raise RuntimeError("CUDA error")

    class Old:
        def classify_batch(self, frames):
            return [type("R", (), {"label": "ok", "is_defect": False, "latency_ms": 1.0})() for _ in frames]

    t = TrialModel(Broken(), Old())
    out = t.classify_batch([1, 2, 3])
    assert [r.label for r in out] == ["ok"] * 3 and t.release == 9
    s = t.window.summary()
    assert (s["errors"], s["frames"]) == (3, 3)
    assert judge(s, {"ok_frames": 0}, TrialLimits(frames=100), 1.0, final=False)[0] == "rollback"


def test_trial_model_prepares_with_the_old_model_when_the_candidate_fails():
    """The loop preprocesses in the camera's thread through prepare(): a candidate failing there is a
    trial error (counted towards rollback) and the trusted model prepares the part instead."""

    class Broken:
        def prepare(self, image):
            raise ValueError("input spec mismatch")

    class Old:
        def prepare(self, image):
            return ("old", image)

    t = TrialModel(Broken(), Old())
    assert t.prepare(7) == ("old", 7)
    assert t.window.summary()["errors"] == 1
    shadow = TrialModel(Broken(), Old(), shadow=Old(), live=False)
    assert shadow.prepare(8) == ("old", 8) and shadow.window.summary()["errors"] == 0


def _window(labels, defect, latency, errors=0):
    w = Window()
    for lab in labels:
        w.add(lab, lab in defect, latency)
    for _ in range(errors):
        w.add_error()
    return w.summary()


def test_judge_rules():
    lim = TrialLimits(frames=50, max_slowdown=3.0)
    base = _window(["ok"] * 90 + ["scratch"] * 10, {"scratch"}, 5.0)
    assert judge(_window(["ok"] * 10, set(), 5.0), base, lim, 1.0, final=False) is None  # keep watching
    assert judge(_window(["ok"] * 45 + ["scratch"] * 5, {"scratch"}, 5.5), base, lim, 9.0, final=False)[0] == "commit"
    slow = judge(_window(["ok"] * 45 + ["scratch"] * 5, {"scratch"}, 40.0), base, lim, 9.0, final=False)
    assert slow[0] == "rollback" and "too slow" in slow[1]
    one = judge(_window(["ok"] * 60, {"scratch"}, 5.0), base, lim, 9.0, final=False)
    assert one[0] == "rollback" and "all 60 outputs were 'ok'" in one[1]
    errs = judge(_window(["ok"] * 40, set(), 5.0, errors=10), base, lim, 9.0, final=False)
    assert errs[0] == "rollback" and "failed" in errs[1]
    idle = judge(_window([], set(), 0.0), base, lim, 600.0, final=True)
    assert idle[0] == "commit" and "idle" in idle[1]
    # no baseline yet (fresh device): only errors can fail it
    assert judge(_window(["scratch"] * 60, {"scratch"}, 5.0), {"ok_frames": 0}, lim, 9.0, final=False)[0] == "commit"


def test_staging_and_slot_names_come_from_the_hash(rig):
    pending = rig.push(rig.model("m2", 2, file="defect-v2.onnx"), 2)
    names = {p.name for p in (rig.state_dir / "models").rglob("*")}
    assert pending.sha256 in names and "defect-v2.onnx" in names
    assert all(os.path.realpath(p).startswith(str(rig.state_dir.resolve())) for p in (rig.state_dir / "models").rglob("*"))


def test_wrapper_is_transparent_for_the_loop_and_commands(rig):
    clf = rig.loop.classifier
    assert (clf.model_id, clf.release, clf.labels) == ("tiny-defect", 1, ["ok", "defect"])
    clf.thresholds = {**clf.thresholds, "defect": 0.99}   # what the set-threshold command does
    assert clf.model.thresholds["defect"] == 0.99


def test_without_history_the_old_model_shadows_the_trial(tmp_path, store):
    """Pushed right after boot (no baseline yet): the candidate runs in shadow, so the old model sees
    every trial part, and the paired comparison on the same parts catches the bad model."""
    rig = OtaRig(tmp_path, store, trial_frames=100)
    assert rig.installer.serving.model.window.summary()["ok_frames"] == 0
    rig.push(rig.model("m2", 2, bias=(-10.0, 10.0)), 2)
    rig.run_frames(100, defect_share=0.05)
    state = rig.last_state()
    assert state["status"] == "rolled_back" and "on the same 100 parts" in state["detail"], state["detail"]
    assert rig.serving_release == 1


def test_judge_prefers_the_paired_comparison():
    lim = TrialLimits(frames=50)
    trial = _window(["ok"] * 50, {"scratch"}, 5.0)
    # the line changed: the window baseline saw many defects, but on the same parts both models agree
    base = _window(["scratch"] * 60 + ["ok"] * 40, {"scratch"}, 5.0)
    paired = {"n": 24, "agreement": 1.0, "new_defect_rate": 0.0, "old_defect_rate": 0.0, "old_labels": {"ok": 24}}
    assert judge({**trial, "paired": paired}, base, lim, 5.0, final=False)[0] == "commit"
    split = {**paired, "agreement": 0.5}
    verdict = judge({**trial, "paired": split}, base, lim, 5.0, final=False)
    assert verdict[0] == "rollback" and "agrees with the old one on only 50%" in verdict[1]
