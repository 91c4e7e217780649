"""The on-disk model slots of one model kind, switched atomically.

    state_dir/models/<kind>/releases/<sha256>/{<file>, manifest.json}
    state_dir/models/<kind>/current  -> releases/<sha256>     (symlink)
    state_dir/models/<kind>/previous -> releases/<sha256>     (symlink)
    state_dir/models/<kind>/trial.json                         (present while a trial runs)

A switch writes a new symlink beside the old one and renames it over (rename is atomic), then
fsyncs the directory, so after a crash `current` names either the old or the new release, never
half of one. A release folder is complete before any link points at it (written under a
temporary name, fsynced, renamed).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from smartstock.ota.fetch import fsync_dir, open_for_write
from smartstock.ota.policy import check_name

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
TRIAL_FILE = "trial.json"


def atomic_write(path: Path, data: bytes) -> None:
    """Write-to-temp, fsync, rename, fsync dir: readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open_for_write(tmp) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@dataclass
class TrialMarker:
    """Persisted before `current` moves to the new release: a restart while it says 'trial' rolls back."""

    kind: str
    state: str                  # trial | committed | rolled_back
    new_sha256: str
    new_release: int
    old_sha256: str | None      # None: the shipped default served before
    old_release: int
    started_at: str
    detail: str = ""


class ModelSlots:
    def __init__(self, state_dir: Path, kind: str) -> None:
        self.kind = kind
        self.root = Path(state_dir) / "models" / kind
        self.releases = self.root / "releases"

    # -- reading ------------------------------------------------------------------------------
    def release_dir(self, sha256: str) -> Path:
        return self.releases / sha256

    def target(self, slot: str) -> str | None:
        """The sha256 a slot points at, or None if the slot is empty or dangling."""
        link = self.root / slot
        try:
            dest = os.readlink(link)
        except OSError:
            return None
        sha = Path(dest).name
        return sha if (self.releases / sha).is_dir() else None

    def model_file(self, sha256: str) -> Path | None:
        """The model file inside a release folder (the one file that is not the manifest)."""
        d = self.release_dir(sha256)
        files = [p for p in d.iterdir() if p.is_file() and p.name != MANIFEST_NAME] if d.is_dir() else []
        return files[0] if len(files) == 1 else None

    def unpacked(self, sha256: str, file_name: str, size: int) -> Path | None:
        """A release folder left by an install that was interrupted after unpacking (re-hashed before use)."""
        from smartstock.ota.fetch import existing

        check_name(file_name)
        d = self.release_dir(sha256)
        if not ((d / file_name).is_file() and (d / MANIFEST_NAME).is_file()):
            return None
        return d / file_name if existing(d, sha256, size, name=file_name) else None

    def read_trial(self) -> TrialMarker | None:
        path = self.root / TRIAL_FILE
        try:
            return TrialMarker(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as e:  # a torn write is impossible (atomic), but be safe
            logger.error("%s is unreadable (%s); treating it as an interrupted trial", path, e)
            return TrialMarker(self.kind, "trial", "", 0, None, 0, "", "unreadable marker")

    # -- writing ------------------------------------------------------------------------------
    def add_release(self, sha256: str, file_name: str, staged: Path, manifest_bytes: bytes) -> Path:
        """Move a verified staged file and its manifest into releases/<sha256>/ (idempotent)."""
        check_name(file_name)
        final = self.release_dir(sha256)
        if final.is_dir() and (final / file_name).is_file() and (final / MANIFEST_NAME).is_file():
            if staged != final / file_name:
                staged.unlink(missing_ok=True)
            if (final / MANIFEST_NAME).read_bytes() != manifest_bytes:  # same file, re-signed manifest
                atomic_write(final / MANIFEST_NAME, manifest_bytes)
            return final / file_name
        self.releases.mkdir(parents=True, exist_ok=True)
        tmp = self.releases / f".{sha256}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        os.replace(staged, tmp / file_name)   # same file system (both under state_dir/models)
        with open_for_write(tmp / MANIFEST_NAME) as f:
            f.write(manifest_bytes)
            f.flush()
            os.fsync(f.fileno())
        with open(tmp / file_name, "rb") as f:
            os.fsync(f.fileno())
        fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(self.releases)
        fsync_dir(staged.parent)
        return final / file_name

    def point(self, slot: str, sha256: str | None) -> None:
        """Atomically make `slot` point at releases/<sha256> (None removes the slot)."""
        self.root.mkdir(parents=True, exist_ok=True)
        link = self.root / slot
        if sha256 is None:
            try:
                os.unlink(link)
            except FileNotFoundError:
                return
        else:
            tmp = self.root / f".{slot}.tmp"
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            os.symlink(f"releases/{sha256}", tmp)
            os.replace(tmp, link)
        fsync_dir(self.root)

    def write_trial(self, marker: TrialMarker) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / TRIAL_FILE, json.dumps(asdict(marker), indent=2).encode("utf-8"))

    def prune(self, keep: set[str | None]) -> None:
        """Delete release folders no slot or trial needs (keeps current and previous)."""
        keep = {k for k in keep if k} | {self.target("current"), self.target("previous")}
        if not self.releases.is_dir():
            return
        for d in self.releases.iterdir():
            if d.name not in keep:
                shutil.rmtree(d, ignore_errors=True)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
