"""What the updater needs to know about each kind of model, behind one small interface.

The installer stays model-agnostic: a kind says how to check the model manifest against the signed
release, load a model in a fresh runtime, compare its contract with the running model, and run
its golden samples. Runtimes are imported lazily (a kind whose runtime is missing is unsupported).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from smartstock.errors import BackendUnavailable, ModelError, SmartStockError
from smartstock.ota.refusal import (
    GOLDEN_FAILED, LOAD_FAILED, MALFORMED, UNFIT_MODEL, WRONG_INPUT, WRONG_OUTPUT, UpdateRefused,
)
from smartstock.ota.release import ReleaseManifest
from smartstock.ota.trial import ObservedModel, TrialLimits, TrialModel, judge

logger = logging.getLogger(__name__)


class ModelKind(Protocol):
    kind: str

    def check_manifest(self, release: ReleaseManifest) -> None:
        """The model manifest inside the release agrees with the signed artifact entry."""

    def load(self, path: Path) -> Any:
        """A freshly loaded model object (not shared with the running one)."""

    def check_contract(self, new: Any, running: Any | None) -> None:
        """Refuse (WRONG_INPUT / WRONG_OUTPUT) a model the service could not use in place of `running`."""

    def golden(self, model: Any) -> str:
        """Run the manifest's golden samples; returns the detail or raises GOLDEN_FAILED."""

    def identity(self, model: Any) -> tuple[int, str | None, str]:
        """(release, sha256 of the model file, model id)."""

    # serving and trial (what the service holds, and how a new model is judged)
    def serve(self, model: Any) -> Any: ...
    def unwrap(self, served: Any) -> Any: ...
    def start_trial(self, new: Any, old_served: Any | None, *, live: bool = False) -> tuple[Any, dict[str, Any]]:
        """The model to serve during the trial and the baseline; `live`: the candidate's own outputs
        are served (else it runs in shadow of the trusted model where the kind can do that)."""
        ...
    def judge(self, trial: Any, baseline: dict[str, Any], limits: TrialLimits, elapsed_s: float,
              final: bool) -> tuple[str, str] | None: ...
    def committed(self, trial: Any) -> Any: ...


@contextlib.contextmanager
def load_refusals(path: Path) -> Iterator[None]:
    """Loading a model file of any kind: a bad file is refused as LOAD_FAILED (the runtime may raise
    anything on a hostile file); a runtime missing on the device is not the model's fault and passes
    through (start-up exits 5, an install refuses it)."""
    try:
        yield
    except (BackendUnavailable, UpdateRefused):
        raise
    except SmartStockError as e:
        raise UpdateRefused(LOAD_FAILED, f"{Path(path).name}: {e}") from None
    except Exception as e:  # noqa: BLE001
        raise UpdateRefused(LOAD_FAILED, f"{Path(path).name}: runtime refused the file: {type(e).__name__}: {e}") from None


class DefectClassifierKind:
    """defect-classifier: smartstock.vision's DefectClassifier and manifest."""

    kind = "defect-classifier"

    def __init__(self, *, backend: str = "auto", threads: int = 2, roi: Any = None,
                 thresholds: dict[str, float] | None = None, shadow_every: int = 4,
                 providers: Sequence[str] = ("auto",), trt_fp16: bool = False, trt_cache_root: Path | None = None,
                 io_binding: bool = False) -> None:
        self.backend, self.threads, self.roi, self.thresholds = backend, threads, roi, thresholds
        self.providers, self.trt_fp16, self.trt_cache_root = tuple(providers), trt_fp16, trt_cache_root
        self.io_binding = io_binding
        self.shadow_every = shadow_every

    def check_manifest(self, release: ReleaseManifest) -> None:
        from smartstock.vision.manifest import parse_manifest

        try:
            mm = parse_manifest(release.model_manifest_bytes(), "signed model manifest")
        except ModelError as e:
            raise UpdateRefused(MALFORMED, str(e)) from None
        art = next((a for a in mm.artifacts.values() if a.file == release.artifact.name), None)
        if art is None:
            raise UpdateRefused(MALFORMED, f"model manifest does not list {release.artifact.name!r}")
        if (art.sha256, art.size) != (release.artifact.sha256, release.artifact.size):
            raise UpdateRefused(MALFORMED, "model manifest's sha256/size for the artifact differ from the release's")
        if mm.kind != release.kind or mm.release != release.release or mm.model_id != release.model_id:
            raise UpdateRefused(MALFORMED, f"model manifest says {mm.kind} {mm.model_id} release {mm.release}, "
                                f"the release says {release.kind} {release.model_id} release {release.release}")
        if mm.metrics.get("fit_for_use") is False:  # exported with `train cnn --accept-weak`
            reasons = (mm.metrics.get("fitness") or {}).get("reasons") or ["no reason recorded"]
            raise UpdateRefused(UNFIT_MODEL, f"{mm.model_id} release {mm.release} was judged unfit at training: "
                                f"{'; '.join(str(r) for r in reasons)[:300]}",
                                hint="train a better model; a model marked fit_for_use=false is never installed "
                                     "over the air")

    def load(self, path: Path) -> Any:
        from smartstock.vision.classifier import DefectClassifier

        with load_refusals(path):
            # a fresh runtime, warmed up before the swapped model serves its first part
            return DefectClassifier.load(path, backend=self.backend, threads=self.threads, roi=self.roi,
                                         thresholds=self.thresholds, providers=self.providers,
                                         trt_fp16=self.trt_fp16, trt_cache_root=self.trt_cache_root,
                                         io_binding=self.io_binding)

    def check_contract(self, new: Any, running: Any | None) -> None:
        if running is None:
            return
        a, b = new.manifest.input, running.manifest.input
        if (a.shape[1:], a.dtype, a.layout, a.color) != (b.shape[1:], b.dtype, b.layout, b.color):
            raise UpdateRefused(WRONG_INPUT, f"input {a.shape} {a.dtype} {a.layout} {a.color} differs from the "
                                f"running model's {b.shape} {b.dtype} {b.layout} {b.color}",
                                hint="export the new model with the same image size and colour as the running one")
        if list(new.labels) != list(running.labels):
            raise UpdateRefused(WRONG_OUTPUT, f"labels {new.labels} differ from the running model's {running.labels}",
                                hint="keep the same classes in the same order, or change the config and reinstall")
        if set(new.manifest.defect_labels) != set(running.manifest.defect_labels):
            raise UpdateRefused(WRONG_OUTPUT, f"defect labels {new.manifest.defect_labels} differ from "
                                f"{running.manifest.defect_labels}")

    def golden(self, model: Any) -> str:
        from smartstock.vision.manifest import run_golden

        art = model.manifest.artifact_for(model.model_path)
        try:
            ok, _, detail = run_golden(model.backend, model.manifest, art.format)
        except Exception as e:  # noqa: BLE001
            raise UpdateRefused(GOLDEN_FAILED, f"golden samples could not run: {type(e).__name__}: {e}") from None
        if not ok:
            raise UpdateRefused(GOLDEN_FAILED, detail, hint="the file does not compute what its export recorded")
        return detail

    def identity(self, model: Any) -> tuple[int, str | None, str]:
        try:
            sha = model.manifest.artifact_for(model.model_path).sha256
        except ModelError:
            sha = None
        return model.release, sha, model.model_id

    # The loop serves an ObservedModel (a window of recent outputs = the baseline of the next trial);
    # during a trial a TrialModel that falls back to the old model on errors.
    def serve(self, model: Any) -> Any:
        return model if isinstance(model, ObservedModel) else ObservedModel(model)

    def unwrap(self, served: Any) -> Any:
        return served.model if isinstance(served, ObservedModel) else served

    def start_trial(self, new: Any, old_served: Any | None, *, live: bool = False) -> tuple[Any, dict[str, Any]]:
        if old_served is None:
            return TrialModel(new, new), {"ok_frames": 0}
        return (TrialModel(new, old_served, shadow=self.unwrap(old_served), shadow_every=self.shadow_every,
                           live=live), old_served.window.summary())

    def judge(self, trial: Any, baseline: dict[str, Any], limits: TrialLimits, elapsed_s: float,
              final: bool) -> tuple[str, str] | None:
        return judge(trial.summary(), baseline, limits, elapsed_s, final)

    def committed(self, trial: Any) -> Any:
        return ObservedModel(trial.model, trial.window)  # the trial frames are its first observations


_KINDS: dict[str, str] = {
    "defect-classifier": "smartstock.ota.kinds:DefectClassifierKind",
    "demand-forecaster": "smartstock.ota.kinds_demand:DemandForecasterKind",
}


class KindUnavailable(SmartStockError):
    """A model kind whose adapter cannot be loaded on this device (unknown, or its code fails to import)."""


def kind_class(kind: str) -> type:
    """The adapter class for a kind. Raises KindUnavailable (saying why) rather than returning nothing:
    the caller must say on model/state that updates of this kind are off."""
    module, _, name = _KINDS.get(kind, ":").partition(":")
    if not module:
        raise KindUnavailable(f"unknown model kind {kind!r}; known: {', '.join(sorted(_KINDS))}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise KindUnavailable(f"{module}:{name} cannot be loaded: {type(e).__name__}: {e}",
                              hint="reinstall smartstock with the edge extra: pip install 'smartstock[edge]'") from e
