"""demand-forecaster: the global demand LSTM through the same signed install path as the defect model.

There are no live frames to watch, so its trial is a shadow backtest on this device's own sales
history: both models forecast the last few windows of every SKU and the new one must not be more
than `max_worse` times worse (mean absolute error, each SKU scaled by its level). Without enough
local history the golden samples are the whole check. Serving means: the planner uses the installed
file in place of `forecast.lstm_model` from its next refresh (the edge's OTA agent tells it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import ValidationError

from smartstock.errors import ModelError
from smartstock.ota.kinds import load_refusals
from smartstock.ota.refusal import GOLDEN_FAILED, MALFORMED, WRONG_INPUT, WRONG_OUTPUT, UpdateRefused
from smartstock.ota.release import ReleaseManifest
from smartstock.ota.trial import TrialLimits

logger = logging.getLogger(__name__)

MAX_ORIGINS = 12


@dataclass
class DemandModel:
    path: Path
    manifest: Any      # smartstock.forecasting.lstm_manifest.DemandManifest
    backend: Any
    fmt: str

    @property
    def release(self) -> int:
        return self.manifest.release

    def predict(self, windows: np.ndarray) -> np.ndarray:
        from smartstock.forecasting.lstm import make_inputs

        x, scale = make_inputs(windows, self.manifest)
        return np.asarray(self.backend.run(x), np.float64) * scale[:, None]


class DemandForecasterKind:
    kind = "demand-forecaster"

    def __init__(self, *, history: Callable[[], list[np.ndarray]] | None = None, max_worse: float = 1.25,
                 backend: str = "auto") -> None:
        self.history = history or (lambda: [])
        self.max_worse = max_worse
        self.backend = backend

    def check_manifest(self, release: ReleaseManifest) -> None:
        from smartstock.forecasting.lstm_manifest import DemandManifest

        try:
            mm = DemandManifest.model_validate(json.loads(release.model_manifest_bytes().decode("utf-8")))
        except (ValueError, ValidationError) as e:
            raise UpdateRefused(MALFORMED, f"signed demand manifest: {str(e).splitlines()[0]}") from None
        art = next((a for a in mm.artifacts.values() if a.file == release.artifact.name), None)
        if art is None or (art.sha256, art.size) != (release.artifact.sha256, release.artifact.size):
            raise UpdateRefused(MALFORMED, f"demand manifest does not list {release.artifact.name!r} with the signed "
                                "sha256/size")
        if mm.release != release.release or mm.model_id != release.model_id:
            raise UpdateRefused(MALFORMED, f"demand manifest says {mm.model_id} release {mm.release}, the release says "
                                f"{release.model_id} release {release.release}")

    def load(self, path: Path) -> DemandModel:
        from smartstock.forecasting.lstm_manifest import load_demand_manifest, verify
        from smartstock.runtime.backends import backend_for_path, load_backend

        with load_refusals(path):
            manifest = load_demand_manifest(path)
            verify(path, manifest)
            backend = load_backend(path, self.backend, threads=1, warmup=1)
            fmt = "onnx" if backend_for_path(path, self.backend) == "onnx" else "tflite"
        return DemandModel(Path(path), manifest, backend, fmt)

    def check_contract(self, new: DemandModel, running: DemandModel | None) -> None:
        if running is None:
            return
        a, b = new.manifest, running.manifest
        if (a.window, a.features, a.scaling) != (b.window, b.features, b.scaling):
            raise UpdateRefused(WRONG_INPUT, f"input window {a.window} x {a.features} differs from the running "
                                f"model's {b.window} x {b.features}")
        if a.horizon != b.horizon or (a.freq and b.freq and a.freq != b.freq):
            raise UpdateRefused(WRONG_OUTPUT, f"horizon {a.horizon} ({a.freq}) differs from the running model's "
                                f"{b.horizon} ({b.freq})")

    def golden(self, model: DemandModel) -> str:
        from smartstock.forecasting.lstm_manifest import golden_check

        try:
            diff = golden_check(model.backend.run, model.manifest, model.fmt)
        except ModelError as e:
            raise UpdateRefused(GOLDEN_FAILED, str(e)) from None
        return f"{model.fmt}: golden samples max |diff| {diff:.3g}"

    def identity(self, model: DemandModel) -> tuple[int, str | None, str]:
        return model.manifest.release, model.manifest.artifact_for(model.path).sha256, model.manifest.model_id

    # -- serving and trial --------------------------------------------------------------------
    def serve(self, model: Any) -> Any:
        return model

    def unwrap(self, served: Any) -> Any:
        return served

    def backtest(self, model: DemandModel, series: list[np.ndarray]) -> tuple[float, int]:
        """Mean level-scaled absolute error over the last MAX_ORIGINS windows of every long-enough series."""
        m = model.manifest
        errs = []
        for y in series:
            n_win = len(y) - m.window - m.horizon + 1
            if n_win < 1:
                continue
            starts = np.arange(max(0, n_win - MAX_ORIGINS), n_win)
            wins = np.stack([y[s:s + m.window] for s in starts])
            actual = np.stack([y[s + m.window:s + m.window + m.horizon] for s in starts])
            level = max(float(np.mean(np.abs(y))), 1e-9)
            errs.append(float(np.mean(np.abs(model.predict(wins) - actual))) / level)
        return (float(np.mean(errs)) if errs else float("nan")), len(errs)

    def start_trial(self, new: DemandModel, old_served: DemandModel | None, *,
                    live: bool = False) -> tuple[Any, dict[str, Any]]:  # a backtest: nothing is booked either way
        series = [np.asarray(y, np.float64) for y in self.history()]
        if old_served is None or not series:
            return new, {"series": 0}
        new_err, n = self.backtest(new, series)
        old_err, _ = self.backtest(old_served, series)
        return new, {"series": n, "new_error": new_err, "old_error": old_err}

    def judge(self, trial: Any, baseline: dict[str, Any], limits: TrialLimits, elapsed_s: float,
              final: bool) -> tuple[str, str] | None:
        n = baseline.get("series", 0)
        if not n:
            return "commit", "no local sales history to compare on; golden samples passed"
        new_err, old_err = baseline["new_error"], baseline["old_error"]
        if new_err > self.max_worse * old_err:
            return "rollback", (f"backtest on {n} local series: error {new_err:.3f} vs {old_err:.3f} for the running "
                                f"model (limit x{self.max_worse:g})")
        return "commit", f"backtest on {n} local series: error {new_err:.3f} vs {old_err:.3f}"

    def committed(self, trial: Any) -> Any:
        return trial
