"""`auto`: per SKU, classify the demand and forecast with what measured best for that class.

Continuous demand: `combo` (statsforecast ETS + Theta combination with closed days and a yearly
season from two seasons on; see combo.py). Intermittent demand: the Croston family and their mix,
picked by a backtest on RMSSE (mean-unbiased; MASE would reward forecasting 0). Without
statsforecast, or with an explicit `models` list, the hand-written candidates are backtested on
MASE instead (announced with a warning, never silently). Too short to backtest: a safe default for
the class (Theta for continuous demand, SBA for intermittent, naive for one or two points).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
from pydantic import Field

from smartstock.forecasting.backtest import MIN_TRAIN, BacktestResult, backtest, origins
from smartstock.forecasting.base import Forecast, Forecaster, ForecasterConfig, make_forecaster, register
from smartstock.forecasting.combo import Combo, ComboConfig
from smartstock.forecasting.demand import DemandClass, candidates, classify, default_model, is_intermittent
from smartstock.forecasting.engine import statsforecast_models

COMBO_MIN = 8  # shortest continuous history handed to `combo` (shorter: the class default)

logger = logging.getLogger(__name__)


class AutoConfig(ForecasterConfig):
    type: Literal["auto"] = "auto"
    windows: int = Field(3, ge=1, le=20, description="Backtest origins per SKU (`combo` uses at most 2: it only "
                                                     "arbitrates between two combinations, and stays within AutoETS's time)")
    horizon: int = Field(0, ge=0, le=1000, description="Backtest horizon (0 = the forecast horizon of the first predict, "
                                                     "else one season or 4)")
    metric: Literal["auto", "mase", "rmsse", "smape", "mae", "rmse"] = Field(
        "auto", description="What the backtest minimises; auto = MASE for continuous demand, RMSSE with zeros "
                            "(sMAPE rewards forecasting exactly 0 and picked seasonal naive on closed days)")
    ensemble_margin: float = Field(0.5, ge=0.0, lt=1.0, description=(
        "Another model replaces the combination only when its backtest error is this much lower (0.5 = half): "
        "selection on a few windows is noisy, and the combination won on M3 unless clearly beaten"))
    models: list[str] | None = Field(None, description="Candidate aliases (default: chosen by demand class)")
    calibrate: bool = Field(True, description="Widen the chosen model's intervals when its backtest errors were "
                                              "larger than its own sigma said (model intervals run narrow)")


@register
class Auto(Forecaster):
    """Model selection by rolling-origin backtest; exposes `chosen`, `demand_class` and `backtest`."""

    Config = AutoConfig

    @classmethod
    def job_options(cls, job: Any) -> dict[str, Any]:
        return {"horizon": job.h, "windows": job.windows}

    def _fit(self, y: np.ndarray) -> None:
        self.demand_class: DemandClass = classify(y)
        self.backtest: BacktestResult | None = None
        h = self.config.horizon or max(4, self.season_length)
        if (not self.config.models and not is_intermittent(self.demand_class) and len(y) >= COMBO_MIN
                and statsforecast_models() is not None):
            self.chosen = "combo"
            self.model = Combo(ComboConfig(horizon=h, windows=min(self.config.windows, 2)),
                               season_length=self.season_length).fit(y)
            self.backtest = self.model.backtest
        else:
            self._select(y, h)
        self.interval_scale = self._interval_scale()
        logger.debug("auto: %s demand, chose %s", self.demand_class, self.chosen)

    def _select(self, y: np.ndarray, h: int) -> None:
        """Backtest the hand-written candidates of the demand class and keep the best, ties to the mix."""
        h = min(h, max(1, len(y) - MIN_TRAIN))
        cands = self.config.models or candidates(self.demand_class, len(y), self.season_length)
        if not self.config.models and is_intermittent(self.demand_class) and len(y) >= COMBO_MIN:
            # selection among Croston variants backtested no better than their mix (and cost most of the
            # time): backtest the mix alone, for its errors and interval calibration
            cands = ["croston-mix"]
        chosen = None
        if (len(cands) > 1 or cands == ["croston-mix"]) and origins(len(y), h, self.config.windows, None, MIN_TRAIN):
            self.backtest = backtest(y, cands, h=h, season_length=self.season_length, windows=self.config.windows,
                                     min_train=MIN_TRAIN)
            metric = self.config.metric
            if metric == "auto":
                metric = "rmsse" if is_intermittent(self.demand_class) else "mase"
            chosen = self.backtest.best(metric)
            scores = self.backtest.metrics
            mix = next((c for c in ("ensemble", "croston-mix") if c in scores), None)
            if chosen and mix and chosen != mix:
                if not scores[chosen][metric] < (1.0 - self.config.ensemble_margin) * scores[mix][metric]:
                    chosen = mix
        if chosen is None:
            chosen = cands[0] if len(cands) == 1 else default_model(self.demand_class, len(y))
        self.chosen = chosen
        self.model = make_forecaster(chosen, season_length=self.season_length).fit(y)

    def _interval_scale(self) -> float:
        """RMS of the backtest errors in units of the model's own sigma, between 1 and 3 (1 = trust the model)."""
        if not self.config.calibrate or self.backtest is None or self.chosen not in self.backtest.z_errors:
            return 1.0
        z = self.backtest.z_errors[self.chosen]
        z = z[np.isfinite(z)]
        if len(z) < 6:
            return 1.0
        return float(np.clip(np.sqrt(np.mean(z * z)), 1.0, 3.0))

    def _predict(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        mean, sigma = self.model._predict(h)
        return mean, np.asarray(sigma) * self.interval_scale

    def predict(self, h: int, level: float = 0.9) -> Forecast:
        """Like the chosen model's; a history without negatives gets no negative forecast or bound."""
        fc = super().predict(h, level)
        return fc.clipped(0.0) if self._y is not None and np.min(self._y) >= 0 else fc

    def errors(self) -> np.ndarray | None:
        """Backtest errors (windows x h, actual - forecast) of the chosen model, if it was backtested."""
        if self.backtest is None:
            return None
        return self.backtest.errors.get(self.chosen)
