"""manifest.json of an exported demand LSTM: what the device needs to feed and read the model.

The defect classifier's `smartstock.vision.manifest.Manifest` describes images (4-D NHWC input,
labels, argmax golden check), so the demand model has this small sibling. It reuses the vision
helpers for artifacts, hashing and golden-sample encoding, so OTA and export treat both alike.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from smartstock.errors import ModelError
from smartstock.vision.manifest import (  # noqa: F401  (re-exported for the LSTM exporter)
    MANIFEST_NAME, Artifact, canonical_bytes, check_artifact_keys, decode_array, encode_array, file_sha256, find_artifact)

logger = logging.getLogger(__name__)

KIND = "demand-forecaster"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scaling(_Strict):
    """Per-window scaling, done outside the model so any series size fits one global network."""

    method: Literal["window-mean"] = Field("window-mean", description="divide each window by its mean |value|")
    floor: float = Field(1e-3, gt=0.0, description="smallest scale, so all-zero windows stay finite")


class DemandManifest(_Strict):
    schema_version: int = Field(1, ge=1, le=1)
    model_id: str = Field(..., pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    kind: Literal["demand-forecaster"] = KIND
    release: int = Field(..., ge=1)
    created: str
    description: str = ""
    window: int = Field(..., ge=2, le=1000, description="history points the model reads")
    horizon: int = Field(..., ge=1, le=1000, description="points the model writes per call")
    season_length: int = Field(1, ge=1, le=366, description="season for the calendar features")
    freq: str | None = Field(None, description="bucket size the model was trained on (D/W/M/Q)")
    features: list[Literal["value", "season_sin", "season_cos"]] = Field(default_factory=lambda: ["value"])
    scaling: Scaling = Field(default_factory=Scaling)
    input_name: str = "history"
    metrics: dict[str, float] = Field(default_factory=dict)
    golden_inputs: str = Field(..., description="(N, window, features) float32 model inputs, base64 npy")
    artifacts: dict[str, Artifact] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> "DemandManifest":
        if self.features[0] != "value":
            raise ValueError("features must start with 'value'")
        check_artifact_keys(self.artifacts)
        return self

    def artifact_for(self, model_path: Path) -> Artifact:
        return find_artifact(self.artifacts, model_path)

    def to_bytes(self) -> bytes:
        return canonical_bytes(self)


def load_demand_manifest(model_path: Path) -> DemandManifest:
    """The manifest beside a model file; every problem is a ModelError naming the file and field."""
    path = Path(model_path).with_name(MANIFEST_NAME)
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: manifest.json not found beside the LSTM model",
                         hint="copy the manifest.json exported with the model into the same folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: unreadable manifest: {e}", hint="re-export the model") from None
    if raw.get("kind") != KIND:
        raise ModelError(f"{path}: kind is {raw.get('kind')!r}, expected {KIND!r}",
                         hint="--lstm-model must point at a demand model (e.g. models/demand/demand_lstm.onnx)")
    try:
        return DemandManifest.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ModelError(f"{path}: {where}: {first['msg']}", hint="re-export the model") from None


def write_demand_manifest(manifest: DemandManifest, folder: Path) -> Path:
    path = Path(folder) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(manifest.to_bytes())
    tmp.replace(path)
    return path


def verify(model_path: Path, manifest: DemandManifest) -> Artifact:
    """Size and sha256 of the file against the manifest."""
    art = manifest.artifact_for(model_path)
    if Path(model_path).stat().st_size != art.size or file_sha256(Path(model_path)) != art.sha256:
        raise ModelError(f"{model_path}: size or sha256 does not match manifest.json",
                         hint="the file is corrupt or from another export; copy both files from one export")
    return art


def golden_check(run, manifest: DemandManifest, fmt: str) -> float:
    """Max |diff| of the artifact's outputs on the golden inputs vs the stored ones (ModelError if too big)."""
    art = manifest.artifacts[fmt]
    x = decode_array(manifest.golden_inputs).astype(np.float32)
    want = decode_array(art.golden_outputs)
    got = run(x)
    diff = float(np.max(np.abs(np.asarray(got, np.float64) - want)))
    if not diff <= art.golden_tolerance:
        raise ModelError(f"{art.file}: golden samples differ by {diff:.3g} (tolerance {art.golden_tolerance:g})",
                         hint="the runtime or file does not reproduce the exported model; re-export or reinstall")
    return diff
