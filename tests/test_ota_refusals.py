"""Every refusal of issue 7, each with its reason reported and the old model still serving."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from smartstock.ota.envelope import seal
from smartstock.ota.keys import generate_keypair, load_private_key
from smartstock.ota.refusal import UpdateRefused
from smartstock.ota.release import ReleaseManifest
from tests.fixtures.ota import OtaRig, frames


@pytest.fixture
def rig(tmp_path, store):
    return OtaRig(tmp_path, store)


def assert_refused(rig: OtaRig, reason: str, fn, *args, **kw) -> UpdateRefused:
    before = rig.loop.classifier
    with pytest.raises(UpdateRefused) as ei:
        fn(*args, **kw)
    assert ei.value.reason == reason, str(ei.value)
    # the old model still serves, untouched, and keeps classifying
    assert rig.loop.classifier is before and rig.serving_release == 1
    assert [r.label for r in rig.loop.feed(frames(2, bright=False) + frames(2, bright=True))] == ["ok", "ok", "defect", "defect"]
    state = rig.last_state()
    assert state["status"] == "refused" and state["error"] == reason and state["installed_version"] == "1"
    assert rig.history()[-1][0] == "refused" and reason in rig.history()[-1][2]
    assert rig.installer.slots.target("current") is None  # nothing was switched on disk
    return ei.value


def offer(rig: OtaRig, raw: bytes):
    return rig.updater.offer(raw)


def test_bad_signature_from_a_key_with_a_trusted_id(rig, tmp_path):
    priv, _ = generate_keypair(tmp_path / "attacker", "tech1")  # same id, different key
    env, _ = rig.sign(rig.model("m2", 2), 2, key=load_private_key(priv))
    assert_refused(rig, "bad_signature", offer, rig, env.to_json())


def test_bad_signature_bytes(rig):
    env, _ = rig.sign(rig.model("m2", 2), 2)
    obj = json.loads(env.to_json())
    sig = bytearray(base64.b64decode(obj["sig"]))
    sig[5] ^= 0x01
    obj["sig"] = base64.b64encode(bytes(sig)).decode()
    assert_refused(rig, "bad_signature", offer, rig, json.dumps(obj).encode())


def test_unknown_key(rig, tmp_path):
    priv, _ = generate_keypair(tmp_path / "other", "contractor")
    env, _ = rig.sign(rig.model("m2", 2), 2, key=load_private_key(priv), key_id="contractor")
    e = assert_refused(rig, "unknown_key", offer, rig, env.to_json())
    assert "contractor" in str(e) and "keyring" in str(e)


def test_tampered_manifest(rig):
    env, rel = rig.sign(rig.model("m2", 2), 2)
    obj = json.loads(env.to_json())
    m = json.loads(base64.b64decode(obj["manifest"]))
    m["target"]["devices"].append("dev-evil")  # a valid manifest, but not the signed bytes
    obj["manifest"] = base64.b64encode(json.dumps(m).encode()).decode()
    assert_refused(rig, "bad_signature", offer, rig, json.dumps(obj).encode())


@pytest.mark.parametrize("mangle, reason", [
    (lambda data: data[:-7], "truncated"),
    (lambda data: data + b"\0" * 7, "oversized"),
    (lambda data: data[:100] + bytes([data[100] ^ 0xFF]) + data[101:], "hash_mismatch"),
])
def test_artifact_transfer_problems(rig, mangle, reason):
    model = rig.model("m2", 2)
    env, _ = rig.sign(model, 2)
    pending = rig.updater.offer(env.to_json())
    assert pending is not None
    assert_refused(rig, reason, rig.updater.stage, pending, mangle(model.read_bytes()))
    staging = rig.state_dir / "models" / "staging"
    assert not (staging / pending.sha256).exists() and not (staging / f"{pending.sha256}.part").exists()
    # a junk artifact does not lock the release out: the same envelope pushed again, with the right file, installs
    again = rig.updater.offer(env.to_json())
    rig.updater.install(again, rig.updater.stage(again, model.read_bytes()))
    assert rig.installer.trial is not None


def test_wrong_input_shape(rig):
    assert_refused(rig, "wrong_input", rig.push, rig.model("m2", 2, size=48), 2)


def test_wrong_labels(rig):
    assert_refused(rig, "wrong_output", rig.push, rig.model("m2", 2, labels=["ok", "scratch"]), 2)


def test_model_marked_unfit_at_training(rig):
    """`train cnn --accept-weak` writes fit_for_use=false: signed and valid, yet never installed."""
    fitness = {"fit_for_use": False, "reasons": ["defect recall 0.000 on its own test split is below the floor 0.9"]}
    e = assert_refused(rig, "unfit_model", rig.push, rig.model("m2", 2, metrics={"fit_for_use": False,
                                                                                  "fitness": fitness}), 2)
    assert "defect recall 0.000" in str(e)
    rig.push(rig.model("m3", 3, metrics={"fit_for_use": True}), 3)  # the same path takes a fit model
    assert rig.installer.trial is not None


def test_lower_release_replay(rig):
    rig.push(rig.model("m3", 3), 3)
    rig.run_frames(60, defect_share=0.05)
    assert rig.serving_release == 3 and rig.last_state()["status"] == "committed"
    # the same envelope again (a retained re-delivery) is simply up to date, not reinstalled
    installed_file = rig.installer.slots.model_file(rig.installer.slots.target("current"))
    env3, _ = rig.sign(installed_file, 3, summary="signed again")
    # a lower release, validly signed (an old envelope replayed), is refused
    before = rig.loop.classifier
    with pytest.raises(UpdateRefused) as ei:
        rig.push(rig.model("m2", 2, bias=(9.0, -9.0)), 2)
    assert ei.value.reason == "downgrade" and rig.loop.classifier is before and rig.serving_release == 3
    assert rig.last_state()["error"] == "downgrade"
    n_reports = len(rig.history())
    assert rig.updater.offer(env3.to_json()) is None
    assert rig.last_state()["status"] == "up_to_date" and rig.serving_release == 3
    assert rig.updater.offer(env3.to_json()) is None  # byte-identical re-delivery: ignored quietly
    assert len(rig.history()) == n_reports + 1


def test_downgrade_needs_both_manifest_and_device_consent(tmp_path, store):
    rig = OtaRig(tmp_path, store, allow_downgrade=True)
    rig.push(rig.model("m3", 3), 3)
    rig.run_frames(60)
    assert rig.serving_release == 3
    with pytest.raises(UpdateRefused, match="does not allow a downgrade"):
        rig.push(rig.model("m2", 2, bias=(9.0, -9.0)), 2)
    rig.push(rig.model("m2b", 2, bias=(9.0, -9.0)), 2, allow_downgrade=True)
    rig.run_frames(60)
    assert rig.serving_release == 2 and rig.last_state()["status"] == "committed"


def test_expired_manifest(rig):
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    assert_refused(rig, "expired", rig.push, rig.model("m2", 2), 2, expires=past)


def test_wrong_target(rig):
    assert_refused(rig, "wrong_target", rig.push, rig.model("m2", 2), 2, devices=["dev9"], groups=["hall-b"])


def test_group_target_is_accepted(rig):
    rig.push(rig.model("m2", 2), 2, devices=[], groups=["hall-a"])
    assert rig.installer.trial is not None


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'{"v": 1}', "\u00ff".encode("latin-1"),
                                 b'{"v":1,"kind":"defect-classifier","key_id":"tech1","manifest":"@@","sig":"AA=="}'])
def test_malformed_json(rig, raw):
    assert_refused(rig, "malformed", offer, rig, raw)


def test_oversized_envelope(rig):
    assert_refused(rig, "too_large", offer, rig, b"{" + b" " * (5 * 1024 * 1024) + b"}")


@pytest.mark.parametrize("name", ["../../etc/cron.d/x.onnx", "/tmp/x.onnx", "..", ".hidden.onnx", "a/b.onnx", "x\n.onnx"])
def test_artifact_name_with_path_traversal(rig, name):
    """Even correctly signed, a name that is not a plain file name is refused (defence in depth)."""
    model = rig.model("m2", 2)
    _, rel = rig.sign(model, 2)
    evil = ReleaseManifest.model_validate({**rel.model_dump(), "artifact": {**rel.artifact.model_dump(), "name": name}})
    env = seal(evil.to_bytes(), "defect-classifier", "tech1", rig.key)
    assert_refused(rig, "bad_name", offer, rig, env.to_json())
    assert not any(p.name.endswith(".onnx") for p in (rig.root / "state").rglob("*") if "releases" in str(p))


def test_model_that_fails_its_golden_samples_is_refused(rig):
    other = rig.model("other", 2, bias=(0.0, 0.0))
    bad = rig.model("m2", 2, golden_from=other)  # the goldens were recorded from a different network
    e = assert_refused(rig, "golden_failed", rig.push, bad, 2)
    assert "max |diff|" in str(e)
    assert not rig.installer.slots.release_dir(e and json.loads(bad.with_name("manifest.json").read_text())
                                               ["artifacts"]["onnx"]["sha256"]).exists()


def test_failed_release_is_not_retried_on_redelivery(rig):
    bad_sha = None
    with pytest.raises(UpdateRefused):
        p = rig.model("m2", 2, golden_from=rig.model("other", 2, bias=(0.0, 0.0)))
        bad_sha = json.loads(p.with_name("manifest.json").read_text())["artifacts"]["onnx"]["sha256"]
        rig.push(p, 2)
    env, _ = rig.sign(p, 2, summary="same file, new envelope")
    with pytest.raises(UpdateRefused) as ei:
        rig.updater.offer(env.to_json())
    assert ei.value.reason == "previously_failed" and bad_sha in rig.installer.failed()
