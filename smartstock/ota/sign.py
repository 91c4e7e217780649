"""Build a signed envelope for a model file (the technician side; `smartstock ota sign` wraps it)."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from smartstock.errors import ConfigError, InputError
from smartstock.ota.envelope import Envelope, seal
from smartstock.ota.policy import check_name
from smartstock.ota.refusal import UpdateRefused
from smartstock.ota.release import ArtifactRef, ReleaseManifest, TargetSpec


def sign_model(model: Path, *, release: int, key: Ed25519PrivateKey, key_id: str, devices: list[str] | None = None,
               groups: list[str] | None = None, any_device: bool = False, expires: dt.datetime | None = None,
               allow_downgrade: bool = False, url: str | None = None, summary: str = "",
               now: dt.datetime | None = None, live_trial: bool = False) -> tuple[Envelope, ReleaseManifest]:
    """Sign one model file of an export folder. The model manifest is embedded byte-for-byte, with its
    `release` set to the release number it ships as."""
    if not (devices or groups or any_device):
        raise ConfigError("no target given", hint="add --target-device ID, --group G or (deliberately) --any-device")
    if release < 1:
        raise ConfigError("--release must be >= 1")
    manifest, art, manifest_file = _load_export(Path(model))
    try:
        check_name(art.file)
    except UpdateRefused as e:
        raise InputError(str(e)) from None
    raw = manifest_file.read_bytes()
    if manifest.release != release:
        raw = manifest.model_copy(update={"release": release}).to_bytes()
    now = now or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    rel = ReleaseManifest(
        kind=manifest.kind, model_id=manifest.model_id, release=release, issued_at=now, expires=expires,
        allow_downgrade=allow_downgrade, summary=summary, live_trial=live_trial,
        target=TargetSpec(devices=list(devices or []), groups=list(groups or []), any_device=any_device),
        artifact=ArtifactRef(name=art.file, sha256=art.sha256, size=art.size, url=url),
        model_manifest=base64.b64encode(raw).decode("ascii"))
    try:
        return seal(rel.to_bytes(), manifest.kind, key_id, key), rel
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _load_export(model: Path) -> tuple[Any, Any, Path]:
    """(manifest, artifact entry, manifest.json path) of an exported model file of either kind, checked
    against the file (size, sha256) so a technician cannot sign a file that is not what was exported."""
    import json

    from smartstock.errors import ModelError
    from smartstock.runtime import manifest_path_for, verify_artifact
    from smartstock.vision.manifest import load_manifest

    path = manifest_path_for(model)
    try:
        kind = json.loads(path.read_bytes()).get("kind")
    except (OSError, ValueError):
        kind = None  # load_manifest below names the problem
    if kind == "demand-forecaster":
        from smartstock.forecasting.lstm_manifest import load_demand_manifest, verify

        manifest = load_demand_manifest(model)
        try:
            return manifest, verify(model, manifest), path
        except OSError as e:
            raise ModelError(f"{model}: cannot read the model file: {e.strerror}") from None
    manifest = load_manifest(model)
    return manifest, verify_artifact(model, manifest), path
