"""Build a signed envelope for a model file (the technician side; `smartstock ota sign` wraps it)."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from smartstock.errors import ConfigError, InputError
from smartstock.ota.envelope import Envelope, seal
from smartstock.ota.policy import check_name
from smartstock.ota.refusal import UpdateRefused
from smartstock.ota.release import ArtifactRef, ReleaseManifest, TargetSpec


def sign_model(model: Path, *, release: int, key: Ed25519PrivateKey, key_id: str, devices: list[str] | None = None,
               groups: list[str] | None = None, any_device: bool = False, expires: dt.datetime | None = None,
               allow_downgrade: bool = False, url: str | None = None, summary: str = "",
               now: dt.datetime | None = None) -> tuple[Envelope, ReleaseManifest]:
    """Sign one model file of an export folder. The model manifest is embedded byte-for-byte, with its
    `release` set to the release number it ships as."""
    from smartstock.vision.manifest import load_manifest, manifest_path_for, verify_artifact

    if not (devices or groups or any_device):
        raise ConfigError("no target given", hint="add --target-device ID, --group G or (deliberately) --any-device")
    if release < 1:
        raise ConfigError("--release must be >= 1")
    manifest = load_manifest(model)
    art = verify_artifact(model, manifest)
    try:
        check_name(art.file)
    except UpdateRefused as e:
        raise InputError(str(e)) from None
    raw = manifest_path_for(model).read_bytes()
    if manifest.release != release:
        raw = manifest.model_copy(update={"release": release}).to_bytes()
    now = now or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    rel = ReleaseManifest(
        kind=manifest.kind, model_id=manifest.model_id, release=release, issued_at=now, expires=expires,
        allow_downgrade=allow_downgrade, summary=summary,
        target=TargetSpec(devices=list(devices or []), groups=list(groups or []), any_device=any_device),
        artifact=ArtifactRef(name=art.file, sha256=art.sha256, size=art.size, url=url),
        model_manifest=base64.b64encode(raw).decode("ascii"))
    try:
        return seal(rel.to_bytes(), manifest.kind, key_id, key), rel
    except ValueError as e:
        raise ConfigError(str(e)) from None
