"""manifest.json: the contract between export, the device loader and the over-the-air updater.

Layout: one folder per exported model holding its artifact files (ONNX, TFLite float32, TFLite int8)
and one manifest.json that describes every artifact (file, sha256, size, golden outputs). A loader
given any model file reads the manifest beside it and finds its entry by file name, so an OTA install
can ship one artifact plus the same signed manifest bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from smartstock.errors import ModelError
from smartstock.vision.preprocess import InputSpec

if TYPE_CHECKING:
    from smartstock.vision.backends.base import InferenceBackend

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
Format = Literal["onnx", "tflite", "tflite_int8"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def encode_array(a: np.ndarray) -> str:
    """ndarray -> base64 of zlib-compressed .npy bytes (small, exact, dtype kept)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return base64.b64encode(zlib.compress(buf.getvalue(), 9)).decode("ascii")


def decode_array(s: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(zlib.decompress(base64.b64decode(s))), allow_pickle=False)
    except (ValueError, zlib.error, OSError) as e:
        raise ModelError(f"golden sample is not valid base64 .npy data: {e}") from None


class Normalisation(_Strict):
    inside_model: bool = Field(True, description="Scaling happens inside the model; preprocess gives 0..255")
    scale: float = Field(1 / 127.5, description="Applied inside the model: x * scale + offset")
    offset: float = Field(-1.0)


class OutputSpec(_Strict):
    name: str = "scores"
    meaning: str = Field("softmax probabilities, one per label in `labels` order, summing to 1")


class Parity(_Strict):
    """Agreement of an artifact with the Keras model on held-out images, measured at export."""

    images: int = Field(..., ge=0)
    label_agreement: float = Field(..., ge=0.0, le=1.0)
    max_abs_diff: float = Field(..., ge=0.0)
    accuracy: float | None = Field(None, ge=0.0, le=1.0)


class Artifact(_Strict):
    format: Format
    file: str = Field(..., min_length=1, description="File name in the manifest's folder")
    sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$")
    size: int = Field(..., gt=0)
    precision: Literal["float32", "int8"] = "float32"
    golden_outputs: str = Field(..., description="This artifact's own outputs on golden_inputs (base64 npy)")
    golden_tolerance: float = Field(..., gt=0.0, le=1.0, description="Largest allowed |score diff| on goldens")
    parity: Parity | None = None


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


class Manifest(_Strict):
    schema_version: int = Field(SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)
    model_id: str = Field(..., pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    kind: Literal["defect-classifier", "demand-forecaster"] = "defect-classifier"
    release: int = Field(..., ge=1)
    created: str = Field(..., description="UTC ISO-8601 time of export")
    description: str = ""
    input: InputSpec
    normalisation: Normalisation = Field(default_factory=Normalisation)
    output: OutputSpec = Field(default_factory=OutputSpec)
    labels: list[str] = Field(..., min_length=2)
    defect_labels: list[str] = Field(default_factory=list)
    thresholds: dict[str, float] = Field(default_factory=dict, description="Per defect label: score to call it")
    metrics: dict[str, Any] = Field(default_factory=dict)
    golden_inputs: str | None = Field(None, description="A few preprocessed inputs (base64 npy, uint8)")
    artifacts: dict[str, Artifact] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> "Manifest":
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        unknown = (set(self.defect_labels) | set(self.thresholds)) - set(self.labels)
        if unknown:
            raise ValueError(f"defect_labels/thresholds name unknown labels {sorted(unknown)}")
        for label, t in self.thresholds.items():
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"threshold for {label!r} must be in [0, 1], got {t}")
        check_artifact_keys(self.artifacts)
        return self

    def artifact_for(self, model_path: Path) -> Artifact:
        """The entry whose file name is model_path's name."""
        return find_artifact(self.artifacts, model_path)

    def to_bytes(self) -> bytes:
        """Canonical bytes written to disk (and signed by the OTA tool)."""
        return canonical_bytes(self)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_manifest(data: bytes, source: str = MANIFEST_NAME) -> Manifest:
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{source}: not valid JSON: {e}", hint="re-export the model or restore its manifest.json") from None
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ModelError(f"{source}: {where}: {first['msg']} ({e.error_count()} problem(s))",
                         hint="re-export the model; a hand-edited manifest must keep every field valid") from None


def manifest_path_for(model_path: Path) -> Path:
    """manifest.json beside a model file, or inside it when given the folder."""
    model_path = Path(model_path)
    return model_path / MANIFEST_NAME if model_path.is_dir() else model_path.with_name(MANIFEST_NAME)


def load_manifest(path: Path) -> Manifest:
    """Read a manifest given its own path, its folder or any model file beside it."""
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
    return parse_manifest(data, str(path))


def write_manifest(manifest: Manifest, folder: Path) -> Path:
    """Write atomically (temp file + rename) so a reader never sees half a manifest."""
    path = Path(folder) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(manifest.to_bytes())
    tmp.replace(path)
    return path


def verify_artifact(model_path: Path, manifest: Manifest) -> Artifact:
    """Check the file's size and sha256 against its manifest entry; a mismatch is a ModelError."""
    model_path = Path(model_path)
    art = manifest.artifact_for(model_path)
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


def run_golden(backend: "InferenceBackend", manifest: Manifest, fmt: str) -> tuple[bool, float, str]:
    """Run the golden inputs through a loaded backend; (ok, max |diff|, detail) against the stored outputs."""
    art = manifest.artifacts.get(fmt)
    if art is None:
        return False, float("inf"), f"manifest has no artifact of format {fmt!r}"
    if manifest.golden_inputs is None:
        return False, float("inf"), "manifest has no golden inputs"
    x = decode_array(manifest.golden_inputs).astype(np.dtype(manifest.input.dtype))
    expected = decode_array(art.golden_outputs)
    got = backend.run(x)
    if got.shape != expected.shape:
        return False, float("inf"), f"output shape {got.shape} != expected {expected.shape}"
    diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
    same = float(np.mean(got.argmax(1) == expected.argmax(1)))
    ok = diff <= art.golden_tolerance
    detail = (f"{fmt}: {len(x)} golden samples, max |diff| {diff:.3g} (tolerance {art.golden_tolerance:g}), "
              f"labels agree {same:.0%}")
    return ok, diff, detail
