"""Install a verified, staged release: fresh load, contract and golden checks, atomic swap, trial.

Steps (each one a named crash point for the kill tests, `SMARTSTOCK_OTA_CRASH_AT=<step>`):

    staged     artifact verified in staging/<sha256> (updater.py)
    unpacked   release folder written (current still the old model)
    loaded     new model loaded in a fresh runtime, contract + golden samples passed
    marked     trial.json says 'trial' (a restart from here on rolls back)
    swapped    previous -> old, current -> new, on disk
    trial      the loop serves the new model (old one kept loaded as fallback)
    committing trial passed; nothing persisted yet
    committed  trial.json says 'committed'

`startup()` undoes an interrupted trial and picks the first model that loads and passes its
golden samples: current, then previous, then the shipped default - and says which.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from smartstock.errors import BackendUnavailable
from smartstock.ota.kinds import ModelKind
from smartstock.ota.policy import Installed
from smartstock.ota.refusal import INSTALL_FAILED, LOAD_FAILED, TRIAL_FAILED, UpdateRefused
from smartstock.ota.release import ReleaseManifest
from smartstock.ota.report import StateReporter
from smartstock.ota.slots import ModelSlots, TrialMarker, atomic_write, now_iso
from smartstock.ota.trial import TrialLimits

logger = logging.getLogger(__name__)

ENV_CRASH_AT = "SMARTSTOCK_OTA_CRASH_AT"
CRASH_STEPS = ("staged", "unpacked", "loaded", "marked", "swapped", "trial", "committing", "committed")


def crash_point(step: str) -> None:
    """Test hook: SIGKILL this process at a named step (a real kill, no clean-up runs)."""
    if os.environ.get(ENV_CRASH_AT) == step:
        logger.error("%s=%s: killing the process now", ENV_CRASH_AT, step)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Serving:
    """What the loop runs for a kind, and where it came from (current / previous / default)."""

    model: Any                  # what the service uses (the kind's serving wrapper)
    which: str
    release: int
    sha256: str | None
    model_id: str

    def installed(self) -> dict[str, Any]:
        return {"release": self.release, "sha256": self.sha256, "model_id": self.model_id}


@dataclass
class _Trial:
    release: ReleaseManifest
    model: Any                  # the kind's trial wrapper
    baseline: dict[str, Any]
    marker: TrialMarker
    started: float = field(default_factory=time.monotonic)


class Installer:
    """Owns one kind's slots and serving model; `swap(model)` hands a model to the loop between frames."""

    def __init__(self, state_dir: Path, kind: ModelKind, reporter: StateReporter, *,
                 swap: Callable[[Any], None], limits: TrialLimits) -> None:
        self.kind = kind
        self.slots = ModelSlots(state_dir, kind.kind)
        self.reporter = reporter
        self.swap = swap
        self.limits = limits
        self.serving: Serving | None = None
        self.trial: _Trial | None = None
        self._state_path = self.slots.root / "ota.json"

    # -- persisted anti-rollback facts ---------------------------------------------------------
    def _facts(self) -> dict[str, Any]:
        try:
            return json.loads(self._state_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {"high_water": 0, "failed": []}

    def _save_facts(self, facts: dict[str, Any]) -> None:
        self.slots.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self._state_path, json.dumps(facts).encode("utf-8"))

    def high_water(self) -> int:
        return int(self._facts().get("high_water", 0))

    def failed(self) -> frozenset[str]:
        return frozenset(self._facts().get("failed", []))

    def _mark_failed(self, sha256: str) -> None:
        facts = self._facts()
        facts["failed"] = sorted(set(facts.get("failed", [])) | {sha256})[-200:]
        self._save_facts(facts)

    def installed(self) -> Installed | None:
        s = self.serving
        return Installed(s.release, s.sha256, s.model_id) if s else None

    # -- start-up ------------------------------------------------------------------------------
    def startup(self, default_path: Path | None, *, default_note: str = "") -> Serving:
        """Undo an interrupted trial, then serve current, else previous, else the shipped default."""
        marker = self.slots.read_trial()
        if marker is not None and marker.state == "trial":
            self.slots.point("current", marker.old_sha256)
            if marker.new_sha256:
                self._mark_failed(marker.new_sha256)
            marker.state, marker.detail = "rolled_back", "service restarted during the trial"
            self.slots.write_trial(marker)
            self.reporter.report(self.kind.kind, "rolled_back", release=marker.new_release, sha256=marker.new_sha256,
                                 error=TRIAL_FAILED, detail="service restarted during the trial; back to release "
                                 f"{marker.old_release}")
        problems: list[str] = []
        candidates: list[tuple[str, Path | None, str | None]] = []
        for slot in ("current", "previous"):
            sha = self.slots.target(slot)
            if sha and sha not in {c[2] for c in candidates}:
                candidates.append((slot, self.slots.model_file(sha), sha))
        candidates.append(("default", default_path, None))
        for which, path, sha in candidates:
            if path is None:
                problems.append(f"{which}: model file missing")
                continue
            try:
                model = self.kind.load(path)
                self.kind.golden(model)
            except UpdateRefused as e:
                problems.append(f"{which} ({path.name}): {e.detail}")
                logger.error("start-up: %s model %s is not usable: %s", which, path, e.detail)
                continue
            release, file_sha, model_id = self.kind.identity(model)
            self.serving = Serving(self.kind.serve(model), which, release, file_sha, model_id)
            status = "serving" if which == "current" or (which == "default" and len(candidates) == 1) else "fallback"
            self.reporter.report(self.kind.kind, status, release=release, sha256=file_sha, model_id=model_id,
                                 installed=self.serving.installed(), serving=which,
                                 detail="; ".join(problems) or f"serving the {which} model"
                                 + (f" ({default_note})" if which == "default" and default_note else ""))
            return self.serving
        raise UpdateRefused(INSTALL_FAILED, "no usable model: " + "; ".join(problems),
                            hint="restore models/ from the release, or set vision.model to a good model file")

    # -- install -------------------------------------------------------------------------------
    def install(self, release: ReleaseManifest, staged: Path) -> None:
        """Everything up to the start of the trial; raises UpdateRefused (nothing changed for the loop)."""
        if self.trial is not None:
            raise UpdateRefused(INSTALL_FAILED, f"release {self.trial.release.release} is still on trial; try later")
        sha = release.artifact.sha256
        rep = self.reporter
        try:
            path = self.slots.add_release(sha, release.artifact.name, staged, release.model_manifest_bytes())
        except OSError as e:
            raise UpdateRefused(INSTALL_FAILED, f"cannot write the release folder: {e}") from None
        crash_point("unpacked")
        rep.report(self.kind.kind, "installing", release=release.release, sha256=sha, model_id=release.model_id,
                   progress=60, detail="loading in a fresh runtime and running golden samples", summary=release.summary)
        old = self.serving
        try:
            try:
                new = self.kind.load(path)
            except BackendUnavailable as e:
                raise UpdateRefused(LOAD_FAILED, f"{release.artifact.name}: {e}") from None
            self.kind.check_contract(new, self.kind.unwrap(old.model) if old else None)
            detail = self.kind.golden(new)
        except UpdateRefused:
            self._discard(sha)
            raise
        crash_point("loaded")
        old_sha = old.sha256 if old and old.which != "default" and self.slots.release_dir(old.sha256 or "-").is_dir() else None
        marker = TrialMarker(self.kind.kind, "trial", sha, release.release, old_sha, old.release if old else 0,
                             now_iso(), detail)
        self.slots.write_trial(marker)
        crash_point("marked")
        self.slots.point("previous", old_sha)  # None: the shipped default served before; a rollback returns to it
        self.slots.point("current", sha)
        crash_point("swapped")
        trial_model, baseline = self.kind.start_trial(new, old.model if old else None, live=release.live_trial)
        self.trial = _Trial(release, trial_model, baseline, marker)
        self.swap(trial_model)
        mode = getattr(trial_model, "mode", "")
        rep.report(self.kind.kind, "trial", release=release.release, sha256=sha, model_id=release.model_id, progress=80,
                   detail=f"{detail}; watching {self.limits.frames} frames / {self.limits.max_s:g} s"
                          + (f" ({mode})" if mode else ""))
        crash_point("trial")

    def _discard(self, sha: str) -> None:
        self._mark_failed(sha)
        import shutil

        shutil.rmtree(self.slots.release_dir(sha), ignore_errors=True)

    def poll(self) -> str | None:
        """Judge the running trial; commits or rolls back when decided. Returns 'commit'/'rollback'/None."""
        t = self.trial
        if t is None:
            return None
        elapsed = time.monotonic() - t.started
        verdict = self.kind.judge(t.model, t.baseline, self.limits, elapsed, final=elapsed >= self.limits.max_s)
        if verdict is None:
            return None
        action, why = verdict
        if action == "commit":
            self._commit(t, why)
        else:
            self.rollback(why)
        return action

    def _commit(self, t: _Trial, why: str) -> None:
        crash_point("committing")
        t.marker.state, t.marker.detail = "committed", why
        self.slots.write_trial(t.marker)
        facts = self._facts()
        facts["high_water"] = max(int(facts.get("high_water", 0)), t.release.release)
        self._save_facts(facts)
        crash_point("committed")
        model = self.kind.committed(t.model)
        self.swap(model)
        release, sha, model_id = self.kind.identity(self.kind.unwrap(t.model))
        self.serving = Serving(model, "current", release, sha, model_id)
        self.trial = None
        self.slots.prune(keep={t.marker.old_sha256})
        self.reporter.report(self.kind.kind, "committed", release=release, sha256=sha, model_id=model_id,
                             installed=self.serving.installed(), serving="current", progress=100, detail=why)

    def rollback(self, why: str) -> None:
        """Back to the model that served before the trial: loop first (instantly), then disk."""
        t = self.trial
        if t is None:
            return
        old = self.serving
        self.swap(old.model if old is not None else None)  # None: nothing served before (e.g. no demand model)
        self.slots.point("current", t.marker.old_sha256)
        self._mark_failed(t.marker.new_sha256)
        t.marker.state, t.marker.detail = "rolled_back", why
        self.slots.write_trial(t.marker)
        self.trial = None
        import shutil

        shutil.rmtree(self.slots.release_dir(t.marker.new_sha256), ignore_errors=True)
        self.reporter.report(self.kind.kind, "rolled_back", release=t.release.release, sha256=t.marker.new_sha256,
                             model_id=t.release.model_id, installed=old.installed() if old else None,
                             error=TRIAL_FAILED, detail=why)
