"""DefectClassifier: frame -> Classification, with ROI crop, shared preprocessing and per-class thresholds.

Decision rule (documented for plant users):
  1. Every defect label whose score is >= its threshold is a candidate; the candidate with the highest
     score wins and the part is defective.
  2. Otherwise the part is good, labelled with the highest-scoring good label.
Thresholds come from the manifest (chosen at export for the target defect recall), overridden per
label by the caller (config `vision.thresholds`). A defect label without a threshold uses 0.5.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from smartstock.errors import InputError, ModelError
from smartstock.runtime.backends import InferenceBackend, backend_for_path, load_backend
from smartstock.runtime import verify_artifact
from smartstock.vision.manifest import Manifest, load_manifest
from smartstock.vision.preprocess import Roi, preprocess, preprocess_batch

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
DEFAULT_MODEL_FILE = "defect.onnx"


@dataclass(frozen=True)
class Classification:
    label: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    is_defect: bool = False
    latency_ms: float = 0.0
    #: Good-only detectors: per-patch anomaly map in [0, 1] (0.5 = on the threshold); None for classifiers.
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)
    margin: float = 1.0  # distance of the scores from the decision boundary (decision_margin); small = unsure


@dataclass(frozen=True, eq=False)
class Prepared:
    """A frame preprocessed ahead of `classify_batch` (the service does it in the camera's capture
    thread, so the inference worker only stacks samples and runs the model): the model input sample,
    the input spec and ROI it was made for, and the frame itself, preprocessed again only if the model
    serving by then wants other input (an over-the-air swap between capture and inference)."""

    frame: np.ndarray = field(repr=False)
    sample: np.ndarray = field(repr=False)
    made_for: tuple[Any, Any] = field(repr=False)   # (InputSpec, roi)


def default_model_path() -> Path:
    """The shipped demo model: models/defect/defect.onnx (see smartstock.shipped for where it is looked for)."""
    from smartstock import shipped

    found = shipped.shipped_model("defect", DEFAULT_MODEL_FILE)
    if found is None:
        looked = ", ".join(str(c) for c in shipped.candidates("defect", DEFAULT_MODEL_FILE))
        raise ModelError(f"shipped default model not found (looked in {looked})",
                         hint=f"set vision.model to your own exported .onnx/.tflite file, set {shipped.ENV} to a "
                              "folder holding defect/defect.onnx, or run `make models` in a checkout")
    return found


def decide(scores: np.ndarray, labels: Sequence[str], defect_labels: Sequence[str],
           thresholds: dict[str, float]) -> tuple[int, bool]:
    """Index of the winning label and whether it is a defect (the rule in the module docstring)."""
    idx, is_defect = decide_batch(np.asarray(scores)[None, :], labels, defect_labels, thresholds)
    return int(idx[0]), bool(is_defect[0])


def decide_batch(scores: np.ndarray, labels: Sequence[str], defect_labels: Sequence[str],
                 thresholds: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """`decide()` for every row of (N, labels) scores at once: winning indices and defect flags.
    Ties go to the lower label index, as in a scan of the labels in order."""
    return _decide(scores, DecisionRule.of(labels, defect_labels, thresholds))


@dataclass(frozen=True)
class DecisionRule:
    """The decision rule as arrays over the labels, built once per threshold change (not per batch)."""

    is_defect_label: np.ndarray   # bool per label
    limit: np.ndarray             # threshold per defect label; +inf for good labels (they never "pass")
    has_good: bool

    @classmethod
    def of(cls, labels: Sequence[str], defect_labels: Sequence[str], thresholds: dict[str, float]) -> "DecisionRule":
        is_defect = np.array([name in defect_labels for name in labels])
        limit = np.array([thresholds.get(name, DEFAULT_THRESHOLD) if d else np.inf for name, d in zip(labels, is_defect)])
        return cls(is_defect, limit, not is_defect.all())


def _decide(scores: np.ndarray, rule: DecisionRule) -> tuple[np.ndarray, np.ndarray]:
    passing = scores >= rule.limit                              # only defect labels can pass
    any_defect = passing.any(axis=1)
    best_defect = np.where(passing, scores, -np.inf).argmax(axis=1)
    if not rule.has_good:                                       # no good label: the top score, a defect
        return np.where(any_defect, best_defect, scores.argmax(axis=1)), np.ones(len(scores), bool)
    best_good = np.where(rule.is_defect_label, -np.inf, scores).argmax(axis=1)
    return np.where(any_defect, best_defect, best_good), any_defect


def decision_margin(scores: np.ndarray, rule: DecisionRule) -> np.ndarray:
    """How far each row of scores is from flipping the decision, in score units (0 = on the boundary).

    With a good label the decision is "some defect score reaches its threshold", so the margin is the
    smallest |score - threshold| over the defect labels; without one (a defect-type model) it is the gap
    between the top two scores. Parts with a small margin are the ones worth an operator's label.
    """
    scores = np.asarray(scores, np.float64)
    if not rule.has_good:
        top2 = np.sort(scores, axis=1)[:, -2:] if scores.shape[1] > 1 else np.c_[np.zeros(len(scores)), scores]
        return top2[:, 1] - top2[:, 0]
    gaps = np.abs(scores - rule.limit)[:, rule.is_defect_label]
    return gaps.min(axis=1) if gaps.shape[1] else np.ones(len(scores))


class DefectClassifier:
    """A loaded, manifest-checked defect model. Thread-safe: several inference workers may share one
    (the backends are; thresholds are replaced whole, never mutated)."""

    def __init__(self, backend: InferenceBackend, manifest: Manifest, model_path: Path, *,
                 roi: Roi | None = None, thresholds: dict[str, float] | None = None) -> None:
        self.backend = backend
        self.manifest = manifest
        self.model_path = Path(model_path)
        self.roi = roi
        unknown = set(thresholds or {}) - set(manifest.labels)
        if unknown:
            raise ModelError(f"thresholds name labels the model does not have: {sorted(unknown)}",
                             hint=f"the model's labels are {manifest.labels}")
        self.thresholds = {**manifest.thresholds, **(thresholds or {})}

    @property
    def thresholds(self) -> dict[str, float]:
        """Per-label thresholds; assign a whole new dict to change them (the set-threshold command does)."""
        return self._thresholds

    @thresholds.setter
    def thresholds(self, value: dict[str, float]) -> None:
        rule = DecisionRule.of(self.manifest.labels, self.manifest.defect_labels, value)
        self._thresholds, self._rule = dict(value), rule

    @classmethod
    def load(cls, model_path: Path | None = None, *, backend: str = "auto", threads: int = 2, roi: Roi | None = None,
             thresholds: dict[str, float] | None = None, warmup: int = 1, providers: Sequence[str] = ("auto",),
             trt_fp16: bool = False, trt_cache_root: Path | None = None,
             io_binding: bool = False) -> "DefectClassifier":
        """Load a model file, checking it against manifest.json beside it (sha256, size, shape, labels).
        `providers`, `trt_fp16`, `trt_cache_root` and `io_binding` apply to ONNX models (execution providers)."""
        model_path = Path(model_path) if model_path is not None else default_model_path()
        manifest = load_manifest(model_path)
        if manifest.kind != "defect-classifier":
            raise ModelError(f"{model_path}: manifest kind is {manifest.kind!r}, not a defect classifier",
                             hint="set vision.model to a defect model")
        art = verify_artifact(model_path, manifest)
        options: dict[str, Any] = {}
        if backend_for_path(model_path, backend) == "onnx":
            options = {"providers": tuple(providers), "trt_fp16": trt_fp16, "trt_cache_root": trt_cache_root,
                       "io_binding": io_binding,
                       "model_sha256": art.sha256}
        impl = load_backend(model_path, backend, threads=threads, warmup=warmup, **options)
        check_backend_matches(impl, manifest, model_path)
        if manifest.anomaly is not None and cls is DefectClassifier:  # a good-only detector: same interface
            from smartstock.vision.anomaly import AnomalyDetector

            cls = AnomalyDetector
        return cls(impl, manifest, model_path, roi=roi, thresholds=thresholds)

    @property
    def release(self) -> int:
        return self.manifest.release

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def provider(self) -> str:
        """Where the model runs: cpu, cuda or tensorrt (the execution provider actually serving)."""
        return self.backend.provider

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.labels)

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        return preprocess(frame, self.manifest.input, self.roi)

    def prepare(self, frame: np.ndarray) -> Prepared:
        """`frame` preprocessed now, for a later classify_batch (which also takes plain frames)."""
        return Prepared(frame, self.preprocess(frame), (self.manifest.input, self.roi))

    def model_input(self, frames: Sequence[np.ndarray | Prepared]) -> np.ndarray:
        """The model's input batch for frames and/or Prepared frames: their samples when every one was
        made for this model's input and ROI (the same function, so the same bytes), else preprocessed here."""
        made_for = (self.manifest.input, self.roi)
        if all(isinstance(f, Prepared) and f.made_for == made_for for f in frames):
            return np.stack([f.sample for f in frames])  # type: ignore[union-attr]
        raw = [f.frame if isinstance(f, Prepared) else f for f in frames]
        return preprocess_batch(raw, self.manifest.input, self.roi)

    def scores_batch(self, frames: Sequence[np.ndarray | Prepared]) -> np.ndarray:
        """Raw scores (N, labels) for frames; used by evaluation and classify_batch."""
        if len(frames) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        return self.backend.run(self.model_input(frames))

    def classify(self, frame: np.ndarray) -> Classification:
        return self.classify_batch([frame])[0]

    def classify_batch(self, frames: Sequence[np.ndarray | Prepared]) -> list[Classification]:
        """One Classification per frame (or Prepared frame); latency_ms is the batch time shared equally."""
        if frames is None:
            raise InputError("no frames given")
        t0 = time.perf_counter()
        scores = self.scores_batch(frames)
        per_frame_ms = (time.perf_counter() - t0) * 1e3 / max(len(frames), 1)
        labels = self.manifest.labels
        winners, defects = _decide(scores, self._rule)
        margins = decision_margin(scores, self._rule)
        return [Classification(label=labels[i], score=row[i], scores=dict(zip(labels, row)), is_defect=d,
                               latency_ms=per_frame_ms, margin=m)
                for i, d, row, m in zip(winners.tolist(), defects.tolist(), scores.tolist(), margins.tolist())]


def check_backend_matches(impl: InferenceBackend, manifest: Manifest, model_path: Path) -> None:
    """The model's real input/output shapes must match what the manifest promises."""
    want_in = tuple(None if d < 0 else d for d in manifest.input.shape)
    if tuple(impl.input_shape[1:]) != tuple(want_in[1:]):
        raise ModelError(f"{model_path}: model input {impl.input_shape} does not match manifest input.shape "
                         f"{manifest.input.shape}", hint="the manifest belongs to another export; re-export the model")
    n_out = impl.output_shape[-1] if impl.output_shape else None
    if n_out != len(manifest.labels):
        raise ModelError(f"{model_path}: model has {n_out} outputs but the manifest lists {len(manifest.labels)} "
                         f"labels {manifest.labels}", hint="the manifest belongs to another export; re-export the model")
