"""manifest.json of an exported demand LSTM: what the device needs to feed and read the model.

The defect classifier's manifest describes images (4-D NHWC input, labels, argmax golden check), so
the demand model has this small sibling. Both are built on `smartstock.runtime` (artifacts, hashing,
golden-sample encoding, manifest reading and writing), so OTA and export treat both alike.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from smartstock.errors import ModelError
from smartstock.runtime.artifact import (Artifact, ArtifactManifest, Strict, check_artifact_keys, load_manifest_as,
                                         verify_artifact, write_manifest_file)
from smartstock.runtime.golden import decode_array, max_abs_diff

logger = logging.getLogger(__name__)

KIND = "demand-forecaster"


_Strict = Strict


class Scaling(_Strict):
    """Per-window scaling, done outside the model so any series size fits one global network."""

    method: Literal["window-mean"] = Field("window-mean", description="divide each window by its mean |value|")
    floor: float = Field(1e-3, gt=0.0, description="smallest scale, so all-zero windows stay finite")


class DemandManifest(ArtifactManifest):
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

    @model_validator(mode="after")
    def _consistent(self) -> "DemandManifest":
        if self.features[0] != "value":
            raise ValueError("features must start with 'value'")
        check_artifact_keys(self.artifacts)
        return self


def load_demand_manifest(model_path: Path) -> DemandManifest:
    """The manifest beside a model file; every problem is a ModelError naming the file and field."""
    return load_manifest_as(DemandManifest, model_path, kind=KIND,
                            kind_hint="--lstm-model must point at a demand model (e.g. models/demand/demand_lstm.onnx)")


def write_demand_manifest(manifest: DemandManifest, folder: Path) -> Path:
    return write_manifest_file(manifest, folder)


def verify(model_path: Path, manifest: DemandManifest) -> Artifact:
    """Size and sha256 of the file against the manifest."""
    return verify_artifact(model_path, manifest)


def golden_check(run, manifest: DemandManifest, fmt: str) -> float:
    """Max |diff| of the artifact's outputs on the golden inputs vs the stored ones (ModelError if too big)."""
    art = manifest.artifacts[fmt]
    x = decode_array(manifest.golden_inputs).astype(np.float32)
    want = decode_array(art.golden_outputs)
    got = run(x)
    diff = max_abs_diff(np.asarray(got), want)
    if not diff <= art.golden_tolerance:
        raise ModelError(f"{art.file}: golden samples differ by {diff:.3g} (tolerance {art.golden_tolerance:g})",
                         hint="the runtime or file does not reproduce the exported model; re-export or reinstall")
    return diff
