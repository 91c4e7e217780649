"""The one forecasting interface every model implements, and the registry it fills (see the package's
`__init__`, which imports every built-in model so the registry is complete).

A forecaster is a plugin (STYLE rule 1): a pydantic config class with a `type` key and an
implementation with `fit(y) -> self` and `predict(h, level) -> Forecast`. The shared contract test
runs every registered alias, so a new model cannot skip it.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from smartstock.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Forecast:
    """Point forecast and a central prediction interval at `level` (lo <= mean <= hi)."""

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    alias: str
    level: float

    def clipped(self, floor: float = 0.0) -> "Forecast":
        """Demand cannot go below `floor`: clip all three arrays (the order lo <= mean <= hi survives)."""
        return Forecast(np.maximum(self.mean, floor), np.maximum(self.lo, floor), np.maximum(self.hi, floor),
                        self.alias, self.level)


class ForecasterConfig(BaseModel):
    """Base of every forecaster's config; subclasses set `type: Literal["alias"]`."""

    model_config = ConfigDict(extra="forbid")


class Forecaster(ABC):
    """fit(y) on a 1-D history of equally spaced buckets (no NaN), then predict(h)."""

    alias: ClassVar[str]
    Config: ClassVar[type[ForecasterConfig]]
    min_length: ClassVar[int] = 1  # shortest history this model accepts

    def __init__(self, config: ForecasterConfig | None = None, *, season_length: int = 1) -> None:
        self.config = config if config is not None else self.Config()
        self.season_length = max(1, int(season_length))
        self._y: np.ndarray | None = None

    @classmethod
    def job_options(cls, job: Any) -> dict[str, Any]:
        """Config options this model takes from a forecasting job (runner.Job: h, windows, lstm_model,
        phase, season_length); most models need none. Keeps the runner free of per-model branches."""
        return {}

    def fit(self, y: np.ndarray) -> "Forecaster":
        y = np.asarray(y, dtype=float)
        if y.ndim != 1 or len(y) < self.min_length:
            raise ValueError(f"{self.alias}: needs a 1-D history of at least {self.min_length} points, got shape {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{self.alias}: history contains NaN or infinite values; fill gaps before fitting")
        self._y = y
        self._fit(y)
        return self

    def predict(self, h: int, level: float = 0.9) -> Forecast:
        if self._y is None:
            raise RuntimeError(f"{self.alias}: call fit() before predict()")
        if h < 1:
            raise ValueError(f"horizon must be >= 1, got {h}")
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be between 0 and 1, got {level}")
        mean, sigma = self._predict(h)
        mean = np.asarray(mean, dtype=float)
        sigma = np.nan_to_num(np.abs(np.asarray(sigma, dtype=float)), nan=0.0, posinf=0.0)
        if not np.all(np.isfinite(mean)):  # a diverged fit must not reach a purchase order
            logger.warning("%s: non-finite forecast, falling back to the last value", self.alias)
            mean = np.full(h, self._y[-1])
        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        return Forecast(mean, mean - z * sigma, mean + z * sigma, self.alias, level)

    def forecast(self, y: np.ndarray, h: int, level: float = 0.9) -> Forecast:
        """fit + predict in one call."""
        return self.fit(y).predict(h, level)

    @abstractmethod
    def _fit(self, y: np.ndarray) -> None: ...

    @abstractmethod
    def _predict(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation of the h-step error) for steps 1..h."""


F = TypeVar("F", bound=type[Forecaster])
REGISTRY: dict[str, type[Forecaster]] = {}


def register(cls: F) -> F:
    """Class decorator adding a forecaster to the registry. Its name is said once, as the `type` key of
    its config class (`type: Literal["theta"] = "theta"`); `alias` is taken from there."""
    alias = cls.Config.model_fields["type"].default
    if not isinstance(alias, str) or not alias:
        raise TypeError(f"{cls.__name__}.Config needs a `type` key with its name as default")
    if alias in REGISTRY and REGISTRY[alias] is not cls:
        raise TypeError(f"forecaster {alias!r} registered twice ({REGISTRY[alias].__name__}, {cls.__name__})")
    cls.alias = alias
    REGISTRY[alias] = cls
    return cls


def make_forecaster(alias: str, *, season_length: int = 1, **options: Any) -> Forecaster:
    """Build a registered forecaster by alias; options go to its config (unknown ones are refused)."""
    cls = REGISTRY.get(alias)
    if cls is None:
        raise ConfigError(f"unknown forecasting model {alias!r}",
                          hint=f"use one of: {', '.join(sorted(REGISTRY))}")
    return cls(cls.Config(**options), season_length=season_length)


def available() -> list[str]:
    return sorted(REGISTRY)


def residual_sigma(residuals: np.ndarray, dof: int = 0) -> float:
    """Standard deviation of one-step errors; 0 for too few points (intervals then collapse honestly)."""
    r = np.asarray(residuals, dtype=float)
    r = r[np.isfinite(r)]
    n = len(r) - dof
    if n <= 0:
        return 0.0
    return float(np.sqrt(np.sum(r ** 2) / n))
