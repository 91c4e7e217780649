"""OTA policy and the device clock (pure, no I/O): a small skew is accepted, an unset clock is a clear
refusal of its own instead of a misleading 'issued in the future'."""

from __future__ import annotations

import datetime as dt

import pytest

from smartstock.ota.policy import CLOCK_SKEW, Installed, PolicyInput, decide
from smartstock.ota.refusal import CLOCK_UNSET, NOT_YET_VALID, UpdateRefused
from smartstock.ota.release import ArtifactRef, ReleaseManifest, TargetSpec

ISSUED = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def manifest(**kw) -> ReleaseManifest:
    return ReleaseManifest(kind="defect-classifier", model_id="m", release=2, issued_at=ISSUED,
                           target=TargetSpec(devices=["dev1"]), model_manifest="e30=",
                           artifact=ArtifactRef(name="defect-r2.onnx", sha256="ab" * 32, size=100), **kw)


POLICY = PolicyInput(device_id="dev1", groups=(), supported_kinds=("defect-classifier",), allow_downgrade=False,
                     max_artifact_bytes=10_000, installed=Installed(1, "cd" * 32))


def test_a_device_clock_a_few_minutes_behind_the_signer_still_installs():
    assert decide(manifest(), POLICY, now=ISSUED - CLOCK_SKEW + dt.timedelta(seconds=30)) == "install"


def test_a_release_from_well_in_the_future_is_not_yet_valid():
    with pytest.raises(UpdateRefused) as ei:
        decide(manifest(), POLICY, now=ISSUED - CLOCK_SKEW - dt.timedelta(minutes=1))
    assert ei.value.reason == NOT_YET_VALID


@pytest.mark.parametrize("now", [dt.datetime(1970, 1, 1, 0, 0, 42, tzinfo=dt.timezone.utc),
                                 dt.datetime(2023, 12, 31, 23, 59, tzinfo=dt.timezone.utc)])
def test_an_unset_clock_is_refused_as_such(now):
    with pytest.raises(UpdateRefused) as ei:
        decide(manifest(expires=ISSUED + dt.timedelta(days=30)), POLICY, now=now)
    assert ei.value.reason == CLOCK_UNSET and now.isoformat() in str(ei.value)
    assert "time sync" in (ei.value.hint or "")
