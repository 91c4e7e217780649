"""Demand forecasting: one `Forecaster` interface and the registry of every model, by name.

Importing the package imports each built-in model module; each registers itself (`@register`) under the
`type` key of its config class. Heavy engines (statsforecast, statsmodels, ONNX Runtime for the LSTM)
are imported only when a model is fitted. `forecast.model` in the config is validated against
`FORECASTERS`, and the shared contract test runs every registered model.

Add a model: a module with `XConfig(ForecasterConfig)` (`type: Literal["x"] = "x"`) and
`@register class X(Forecaster)` with `Config = XConfig`, `_fit` and `_predict`; import it below.
"""

from smartstock.forecasting import (  # noqa: F401  (each module registers its models)
    auto, baselines, combination, combo, intermittent, lstm, statistical, theta)
from smartstock.forecasting.base import REGISTRY, Forecast, Forecaster, available, make_forecaster

FORECASTERS: tuple[str, ...] = tuple(sorted(REGISTRY))

__all__ = ["FORECASTERS", "REGISTRY", "Forecast", "Forecaster", "available", "make_forecaster"]
