"""manifest.json of a defect model: what the device needs to feed the model and read its scores.

The artifact entries, hashing, atomic writing and golden-sample encoding are shared with every model
kind and live in `smartstock.runtime`; this module adds what is particular to images (input spec,
normalisation, labels, thresholds) and the argmax golden check.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from smartstock.runtime.artifact import (MANIFEST_NAME, ArtifactManifest, Strict, check_artifact_keys,
                                         load_manifest_as, parse_manifest_as, verify_artifact, write_manifest_file)
from smartstock.runtime.golden import decode_array, max_abs_diff
from smartstock.runtime.providers import golden_tolerance
from smartstock.vision.preprocess import InputSpec

if TYPE_CHECKING:
    from smartstock.runtime.backends.base import InferenceBackend

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

__all__ = ["SCHEMA_VERSION", "AnomalyCalibration", "AnomalySpec", "Manifest", "Normalisation", "OutputSpec",
           "load_manifest", "parse_manifest", "run_golden", "verify_artifact", "write_manifest"]

_Strict = Strict


class Normalisation(_Strict):
    inside_model: bool = Field(True, description="Scaling happens inside the model; preprocess gives 0..255")
    scale: float = Field(1 / 127.5, description="Applied inside the model: x * scale + offset")
    offset: float = Field(-1.0)


class OutputSpec(_Strict):
    name: str = "scores"
    meaning: str = Field("softmax probabilities, one per label in `labels` order, summing to 1")


class AnomalyCalibration(_Strict):
    """Threshold of an export whose scores are not the float model's (the int8 TFLite detector: its int8
    features move the patch distances, so its ring statistics and threshold were fitted again on the same
    held-out good images). Its graph holds them; the device still decides at 0.5 on its `scores`."""

    threshold: float = Field(..., description="Raw image score that marks a defect for this export")
    scale: float = Field(..., gt=0, description="Width of this export's sigmoid")
    calibration_images: int = Field(..., ge=1)
    calibration_false_alarm_rate: float = Field(..., ge=0, le=1, description="Share of those images flagged")
    expected_false_alarm_rate: float | None = Field(None, ge=0, le=1)
    false_alarm_bound: float | None = Field(None, ge=0, le=1)


class AnomalySpec(_Strict):
    """A good-parts-only detector (PatchCore-style): how its score was made and calibrated. The model's
    `scores` output is [1 - s, s] with s = sigmoid((image score - threshold) / scale), the image score being
    the largest patch distance (or the mean of the top_k largest, rescaled with position_norm), so the
    usual defect threshold 0.5 sits exactly on the calibrated score. The int8 TFLite export has its own
    threshold, scale and ring statistics (`int8`; the statistics live in its file only)."""

    method: Literal["patchcore"] = "patchcore"
    backbone: str = Field(..., description="Frozen feature network the memory bank was built with")
    layers: list[str] = Field(..., min_length=1, description="Backbone blocks whose patch features are used")
    bank_size: int = Field(..., ge=1, description="Patches in the memory bank")
    patch_stride: int = Field(8, ge=1, description="Input pixels between two patches of the grid")
    border: int = Field(0, ge=0, description="Patch rows/columns at each edge left out of the score")
    sampler: Literal["coreset", "random"] = "coreset"
    pad: int = Field(0, ge=0, description="Input pixels mirrored outwards at each edge before the backbone")
    top_k: int = Field(1, ge=1, description="Image score: mean of this many largest patch scores")
    neighbours: int = Field(1, ge=1, description="Patch distance: mean distance to this many nearest bank patches")
    position_norm: bool = Field(False, description="Patch distances are rescaled by good parts' median and 99th "
                                                   "percentile at the same distance from the image edge")
    augment: Literal["none", "d4"] = Field("none", description="Bank built from the good images in all 8 "
                                                                "orientations (d4) or as given")
    threshold: float = Field(..., description="Max patch distance that marks a defect (raw anomaly score)")
    scale: float = Field(..., gt=0, description="Width of the sigmoid that maps the raw score to [0, 1]")
    false_alarm_rate: float = Field(..., ge=0, le=1, description="Target share of good parts flagged")
    calibration_images: int = Field(..., ge=1, description="Held-out good images the threshold came from")
    expected_false_alarm_rate: float | None = Field(
        None, ge=0, le=1, description="Share of unseen good parts the threshold flags in expectation, (images above "
                                      "it + 1) / (calibration_images + 1); above the target when too few images")
    false_alarm_bound: float | None = Field(
        None, ge=0, le=1, description="Upper bound on that share holding with 90% confidence (order statistic)")
    heatmap_output: str = Field("heatmap", description="Model output holding the per-patch score map (N, h, w)")
    int8: AnomalyCalibration | None = Field(None, description="The int8 TFLite export's own ring statistics and "
                                                               "threshold (fitted on its int8 features)")


class Manifest(ArtifactManifest):
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
    anomaly: AnomalySpec | None = Field(None, description="Set for a good-parts-only detector (trained on ok/ only)")

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


def parse_manifest(data: bytes, source: str = MANIFEST_NAME) -> Manifest:
    return parse_manifest_as(Manifest, data, source)


def load_manifest(path: Path) -> Manifest:
    """Read a manifest given its own path, its folder or any model file beside it."""
    return load_manifest_as(Manifest, path)


def write_manifest(manifest: Manifest, folder: Path) -> Path:
    """Write atomically (temp file + rename) so a reader never sees half a manifest."""
    return write_manifest_file(manifest, folder)


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
    diff = max_abs_diff(got, expected)
    same = float(np.mean(got.argmax(1) == expected.argmax(1)))
    tolerance = golden_tolerance(art.golden_tolerance, backend.provider, backend.provider_precision)
    ok = diff <= tolerance
    detail = (f"{fmt} on {backend.provider} {backend.provider_precision}: {len(x)} golden samples, max |diff| "
              f"{diff:.3g} (tolerance {tolerance:g}), labels agree {same:.0%}")
    return ok, diff, detail
