"""Model artifacts and their manifest.json, shared by every model kind.

Layout: one folder per exported model holding its artifact files (ONNX, TFLite float32, TFLite int8)
and one manifest.json that describes every artifact (file, sha256, size, golden outputs). A loader
given any model file reads the manifest beside it and finds its entry by file name, so an OTA install
can ship one artifact plus the same signed manifest bytes. The kind-specific manifest models
(`smartstock.vision.manifest.Manifest`, `smartstock.forecasting.lstm_manifest.DemandManifest`) are
built from these pieces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smartstock.errors import ModelError, first_problem
from smartstock.runtime.hashing import file_sha256

MANIFEST_NAME = "manifest.json"
Format = Literal["onnx", "tflite", "tflite_int8"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Parity(Strict):
    """Agreement of an artifact with the training framework's model on held-out inputs, measured at export."""

    images: int = Field(..., ge=0)
    label_agreement: float = Field(..., ge=0.0, le=1.0)
    max_abs_diff: float = Field(..., ge=0.0)
    accuracy: float | None = Field(None, ge=0.0, le=1.0)


class Artifact(Strict):
    format: Format
    file: str = Field(..., min_length=1, description="File name in the manifest's folder")
    sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$")
    size: int = Field(..., gt=0)
    precision: Literal["float32", "int8"] = "float32"
    golden_outputs: str = Field(..., description="This artifact's own outputs on golden_inputs (base64 npy)")
    golden_tolerance: float = Field(..., gt=0.0, le=1.0, description="Largest allowed |score diff| on goldens")
    parity: Parity | None = None


class HasArtifacts(Protocol):
    artifacts: dict[str, Artifact]


class ArtifactManifest(Strict):
    """What every kind's manifest shares: its artifacts keyed by format, lookup by file, canonical bytes.
    Subclasses call `check_artifact_keys(self.artifacts)` in their own after-validator."""

    artifacts: dict[str, Artifact] = Field(default_factory=dict)

    def artifact_for(self, model_path: Path) -> Artifact:
        """The entry whose file name is model_path's name."""
        return find_artifact(self.artifacts, model_path)

    def to_bytes(self) -> bytes:
        """Canonical bytes written to disk (and signed by the OTA tool)."""
        return canonical_bytes(self)


M = TypeVar("M", bound=BaseModel)


def canonical_bytes(manifest: BaseModel) -> bytes:
    """A manifest's canonical JSON bytes (sorted keys): what is written to disk and what OTA signs."""
    return (json.dumps(manifest.model_dump(mode="json"), indent=1, sort_keys=True) + "\n").encode("utf-8")


def check_artifact_keys(artifacts: dict[str, Artifact]) -> None:
    """Each artifact is keyed by its own format (manifest validation, shared by every model kind)."""
    for key, art in artifacts.items():
        if key != art.format:
            raise ValueError(f"artifacts.{key}: key must equal its format {art.format!r}")


def find_artifact(artifacts: dict[str, Artifact], model_path: Path) -> Artifact:
    """The entry whose file name is model_path's name, or a ModelError listing the known files."""
    for art in artifacts.values():
        if art.file == Path(model_path).name:
            return art
    names = ", ".join(a.file for a in artifacts.values()) or "none"
    raise ModelError(f"{model_path}: not listed in its manifest.json (artifacts: {names})",
                     hint="keep the model file's exported name, or use the manifest that was exported with it")


def manifest_path_for(model_path: Path) -> Path:
    """manifest.json beside a model file, or inside it when given the folder."""
    model_path = Path(model_path)
    return model_path / MANIFEST_NAME if model_path.is_dir() else model_path.with_name(MANIFEST_NAME)


def parse_manifest_as(cls: type[M], data: bytes, source: str = MANIFEST_NAME, *, kind: str | None = None,
                      kind_hint: str = "") -> M:
    """Validate manifest bytes as `cls`; every problem is a ModelError naming the source and the field."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{source}: not valid JSON: {e}", hint="re-export the model or restore its manifest.json") from None
    if kind is not None and (not isinstance(raw, dict) or raw.get("kind") != kind):
        got = raw.get("kind") if isinstance(raw, dict) else None
        raise ModelError(f"{source}: kind is {got!r}, expected {kind!r}", hint=kind_hint or None)
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        where, first = first_problem(e)
        newer = first.get("type") == "extra_forbidden"
        hint = ("an unknown field: a typo in a hand-edited manifest, or a model exported by a newer SmartStock (then "
                "update the device software before installing the model, or export with the device's version)"
                if newer else "re-export the model; a hand-edited manifest must keep every field valid")
        raise ModelError(f"{source}: {where}: {first['msg']} ({e.error_count()} problem(s))", hint=hint) from None


def load_manifest_as(cls: type[M], path: Path, *, kind: str | None = None, kind_hint: str = "") -> M:
    """Read and validate the manifest given its own path, its folder or any model file beside it."""
    path = Path(path)
    if path.name != MANIFEST_NAME:
        path = manifest_path_for(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: manifest.json not found beside the model",
                         hint="copy the manifest.json that was exported with the model into the same folder") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read manifest: {e.strerror}") from None
    return parse_manifest_as(cls, data, str(path), kind=kind, kind_hint=kind_hint)


def write_manifest_file(manifest: BaseModel, folder: Path) -> Path:
    """Write the canonical bytes atomically (temp file + rename) so a reader never sees half a manifest."""
    path = Path(folder) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(canonical_bytes(manifest))
    tmp.replace(path)
    return path


def verify_artifact(model_path: Path, manifest: HasArtifacts) -> Artifact:
    """Check the file's size and sha256 against its manifest entry; a mismatch is a ModelError."""
    model_path = Path(model_path)
    art = find_artifact(manifest.artifacts, model_path)
    try:
        size = model_path.stat().st_size
    except FileNotFoundError:
        raise ModelError(f"{model_path}: model file not found") from None
    if size != art.size:
        raise ModelError(f"{model_path}: size {size} bytes, manifest says {art.size} (truncated or replaced file)",
                         hint="copy the model file again, or install a model whose manifest matches it")
    digest = file_sha256(model_path)
    if digest != art.sha256:
        raise ModelError(f"{model_path}: sha256 {digest[:12]}... does not match the manifest's {art.sha256[:12]}...",
                         hint="the file is corrupt or belongs to another export; re-copy both from the same export")
    return art
