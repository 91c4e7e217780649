"""Whether a verified release may be installed here: pure checks, no I/O.

Order matters only for the reason reported: target and validity first (not ours / not now), then
idempotency (the same bytes are already serving: nothing to do), then anti-rollback.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

from smartstock.ota.refusal import (
    BAD_NAME, CLOCK_UNSET, DOWNGRADE, EXPIRED, NOT_YET_VALID, OVERSIZED, PREVIOUSLY_FAILED, UNSUPPORTED_KIND, WRONG_TARGET,
    UpdateRefused,
)
from smartstock.ota.release import ReleaseManifest

PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# A release signed on a laptop whose clock runs a few minutes ahead of the device's is still accepted.
CLOCK_SKEW = dt.timedelta(minutes=10)
# A device without an RTC battery boots in 1970 (or at its image's build date) until NTP answers; before
# this year no expiry or issue-time check means anything, so the update waits for the clock.
EARLIEST_PLAUSIBLE_YEAR = 2024


@dataclass(frozen=True)
class Installed:
    """What serves now for one model kind (None fields when the shipped default serves)."""

    release: int
    sha256: str | None
    model_id: str | None = None


@dataclass(frozen=True)
class PolicyInput:
    device_id: str
    groups: tuple[str, ...]
    supported_kinds: tuple[str, ...]
    allow_downgrade: bool          # the device's own consent (ota.allow_downgrade)
    max_artifact_bytes: int
    installed: Installed | None    # None: nothing known (first install)
    high_water: int = 0            # highest release ever committed here
    failed_sha256: frozenset[str] = frozenset()


def check_name(name: str) -> None:
    """A plain file name: no separators, no '..', no leading dot, no control characters."""
    if not PLAIN_NAME.match(name) or ".." in name:
        raise UpdateRefused(BAD_NAME, f"artifact file name {name!r} is not a plain file name",
                            hint="name the model file like 'defect-r3.onnx'; paths and '..' are refused")


def decide(m: ReleaseManifest, p: PolicyInput, now: dt.datetime | None = None) -> Literal["install", "already_installed"]:
    """'install', 'already_installed', or UpdateRefused with the reason."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if m.kind not in p.supported_kinds:
        raise UpdateRefused(UNSUPPORTED_KIND, f"this device does not run {m.kind!r} models "
                            f"(it runs {', '.join(p.supported_kinds) or 'none'})")
    check_name(m.artifact.name)
    t = m.target
    if not (t.any_device or p.device_id in t.devices or set(p.groups) & set(t.groups)):
        raise UpdateRefused(WRONG_TARGET, f"release is for devices {t.devices} / groups {t.groups}; this is "
                            f"{p.device_id!r} in groups {list(p.groups)}",
                            hint="sign with --target-device or --group matching device.device_id / device.groups")
    if now.year < EARLIEST_PLAUSIBLE_YEAR:
        raise UpdateRefused(CLOCK_UNSET, f"the device clock says {now.isoformat()}: it has not been set, so the "
                            "release's issue and expiry times cannot be checked",
                            hint="enable time sync (systemd-timesyncd or chrony, and systemd-time-wait-sync so the "
                            "service starts after it); the update is offered again when re-published")
    if m.expires is not None and now > m.expires:
        raise UpdateRefused(EXPIRED, f"release expired at {m.expires.isoformat()}",
                            hint="sign it again with a later --expires")
    if m.issued_at > now + CLOCK_SKEW:
        raise UpdateRefused(NOT_YET_VALID, f"release issued at {m.issued_at.isoformat()}, in the future",
                            hint="check the device's clock (NTP)")
    if m.artifact.size > p.max_artifact_bytes:
        raise UpdateRefused(OVERSIZED, f"artifact is {m.artifact.size} bytes, ota.max_artifact_mb allows "
                            f"{p.max_artifact_bytes}")
    inst = p.installed
    if inst is not None and inst.sha256 == m.artifact.sha256:
        return "already_installed"
    if m.artifact.sha256 in p.failed_sha256:
        raise UpdateRefused(PREVIOUSLY_FAILED, f"artifact {m.artifact.sha256[:12]} already failed on this device",
                            hint="publish a fixed model with a new release number")
    floor = max(inst.release if inst else 0, p.high_water)
    if m.release <= floor:
        if not (m.allow_downgrade and p.allow_downgrade):
            why = ("the signed manifest does not allow a downgrade" if not m.allow_downgrade
                   else "the device's ota.allow_downgrade is false")
            raise UpdateRefused(DOWNGRADE, f"release {m.release} is not greater than {floor} (installed or committed "
                                f"before); {why}", hint="use a higher --release, or sign with --allow-downgrade "
                                "and set ota.allow_downgrade = true on the device")
    return "install"
