"""The device-side update flow without threads or MQTT: offer -> fetch -> install -> poll.

`edge/ota_agent.py` drives it from a worker thread and feeds it MQTT messages; tests drive it
directly. Every refusal is reported (model/state + model_history) before it is raised.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from smartstock.config import DeviceConfig, OtaConfig
from smartstock.ota.envelope import DEFAULT_MAX_ENVELOPE_BYTES, Envelope
from smartstock.ota.fetch import existing, fetch_url, stage_bytes, staging_dir
from smartstock.ota.install import Installer, crash_point
from smartstock.ota.keys import Keyring
from smartstock.ota.policy import PolicyInput, decide
from smartstock.ota.refusal import UpdateRefused
from smartstock.ota.release import ReleaseManifest
from smartstock.ota.report import StateReporter
from smartstock.ota.verify import open_envelope

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    """A verified, policy-approved release waiting for (or holding) its artifact."""

    envelope: Envelope
    release: ReleaseManifest
    digest: str  # sha256 of the envelope bytes: a re-delivered retained envelope is recognised

    @property
    def sha256(self) -> str:
        return self.release.artifact.sha256


class Updater:
    def __init__(self, *, device: DeviceConfig, ota: OtaConfig, state_dir: Path, reporter: StateReporter,
                 installers: dict[str, Installer], keyring: Keyring,
                 max_envelope_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES) -> None:
        self.device, self.ota, self.state_dir = device, ota, Path(state_dir)
        self.reporter, self.installers, self.keyring = reporter, installers, keyring
        self.max_envelope_bytes = max_envelope_bytes
        self.staging = staging_dir(self.state_dir)
        self._seen: dict[str, str] = {}  # envelope digest -> outcome (ignore retained re-deliveries)

    def _refuse(self, kind: str, e: UpdateRefused, release: ReleaseManifest | None = None) -> UpdateRefused:
        self.reporter.report(kind, "refused", release=release.release if release else None,
                             sha256=release.artifact.sha256 if release else None,
                             model_id=release.model_id if release else None, error=e.reason, detail=e.detail)
        return e

    def refuse(self, e: UpdateRefused) -> None:
        """Report an envelope refused before `offer` (the cheap pre-check on the MQTT thread)."""
        self._refuse("defect-classifier", e)

    def offer(self, raw: bytes) -> Pending | None:
        """Verify and decide. None: nothing to do (already installed or seen). Raises UpdateRefused."""
        digest = hashlib.sha256(raw).hexdigest()
        if len(self._seen) > 1000:  # bounded: a flood of junk envelopes must not grow memory
            self._seen.clear()
        if digest in self._seen:
            logger.debug("envelope %s already handled (%s)", digest[:12], self._seen[digest])
            return None
        release = None
        kind = "defect-classifier"
        try:
            env, release = open_envelope(raw, self.keyring, max_bytes=self.max_envelope_bytes)
            kind = release.kind
            inst = self.installers.get(kind)
            policy = PolicyInput(
                device_id=self.device.device_id, groups=tuple(self.device.groups),
                supported_kinds=tuple(self.installers), allow_downgrade=self.ota.allow_downgrade,
                max_artifact_bytes=int(self.ota.max_artifact_mb * 1024 * 1024),
                installed=inst.installed() if inst else None, high_water=inst.high_water() if inst else 0,
                failed_sha256=inst.failed() if inst else frozenset())
            verdict = decide(release, policy)
            if verdict == "install":
                inst.kind.check_manifest(release)
        except UpdateRefused as e:
            self._seen[digest] = f"refused {e.reason}"
            raise self._refuse(kind, e, release) from None
        if verdict == "already_installed":
            self._seen[digest] = "already installed"
            s = inst.serving
            self.reporter.report(kind, "up_to_date", release=release.release, sha256=release.artifact.sha256,
                                 model_id=release.model_id, installed=s.installed() if s else None,
                                 detail=f"release {release.release} ({release.artifact.sha256[:12]}) already serves")
            return None
        self._seen[digest] = "accepted"
        self.reporter.report(kind, "verifying", release=release.release, sha256=release.artifact.sha256,
                             model_id=release.model_id, progress=10, summary=release.summary,
                             detail=f"signature ok (key {env.key_id}), target/expiry/release ok")
        return Pending(env, release, digest)

    def forget(self, p: Pending) -> None:
        """Let the next delivery of this envelope be tried again (e.g. its artifact never came)."""
        self._seen.pop(p.digest, None)

    def local(self, p: Pending) -> Path | None:
        """The artifact if it is already here: staged, or unpacked by an install that was interrupted."""
        a = p.release.artifact
        found = existing(self.staging, a.sha256, a.size)
        if found is None:
            found = self.installers[p.release.kind].slots.unpacked(a.sha256, a.name, a.size)
        return found

    def fetch(self, p: Pending) -> Path:
        """https (or loopback http) download into staging; for an MQTT artifact use `stage()`."""
        a = p.release.artifact
        done = existing(self.staging, a.sha256, a.size)
        if done is not None:
            return done
        self.reporter.report(p.release.kind, "downloading", release=p.release.release, sha256=a.sha256,
                             model_id=p.release.model_id, progress=20, detail=f"GET {a.url}")
        try:
            path = fetch_url(a.url or "", self.staging, a.sha256, a.size, allow_http=self.ota.allow_http)
        except UpdateRefused as e:
            self.forget(p)  # a transfer problem may be retried on the next delivery
            raise self._refuse(p.release.kind, e, p.release) from None
        crash_point("staged")
        return path

    def stage(self, p: Pending, data: bytes) -> Path:
        """Stage an artifact that arrived as one MQTT message."""
        a = p.release.artifact
        try:
            path = stage_bytes(data, self.staging, a.sha256, a.size)
        except UpdateRefused as e:
            # anyone who can publish on the broker can put junk on an artifact topic: refuse it, but let the
            # technician's re-push (same envelope) try again rather than locking the release out
            self.forget(p)
            raise self._refuse(p.release.kind, e, p.release) from None
        crash_point("staged")
        return path

    def install(self, p: Pending, staged: Path) -> None:
        inst = self.installers[p.release.kind]
        try:
            inst.install(p.release, staged)
        except UpdateRefused as e:
            raise self._refuse(p.release.kind, e, p.release) from None

    def poll(self) -> None:
        for inst in self.installers.values():
            inst.poll()

    @property
    def busy(self) -> bool:
        return any(i.trial is not None for i in self.installers.values())
