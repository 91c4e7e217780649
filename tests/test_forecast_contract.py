"""ONE contract for every registered forecaster: shapes, lo <= mean <= hi, finite, short and flat
histories, horizons, and misuse. A new model registered in smartstock.forecasting runs here too."""

from __future__ import annotations

import numpy as np
import pytest

from smartstock.forecasting.base import Forecast, Forecaster, available, make_forecaster
from tests.fixtures.lstm import lstm_dir  # noqa: F401  (session fixture)

RNG = np.random.default_rng(7)
T = np.arange(48)
HISTORIES = {
    "seasonal-trend": 50 + 0.2 * T + 8 * np.sin(2 * np.pi * T / 12) + RNG.normal(0, 2, 48),
    "constant": np.full(20, 7.0),
    "one-point": np.array([5.0]),
    "three-points": np.array([4.0, 6.0, 5.0]),
    "intermittent": RNG.choice([0.0, 0.0, 0.0, 2.0, 9.0], 60),
    "all-zero": np.zeros(15),
}


def build(alias: str, lstm_dir) -> Forecaster:
    if alias == "lstm":
        return make_forecaster("lstm", season_length=12, model_path=lstm_dir / "demand_lstm.onnx")
    return make_forecaster(alias, season_length=12)


@pytest.fixture(params=available())
def alias(request) -> str:
    return request.param


@pytest.mark.parametrize("name", list(HISTORIES))
@pytest.mark.parametrize("h", [1, 9])
def test_forecaster_contract(alias, name, h, lstm_dir):  # noqa: F811
    y = HISTORIES[name]
    fc = build(alias, lstm_dir).fit(y).predict(h, level=0.8)
    assert isinstance(fc, Forecast)
    assert fc.mean.shape == fc.lo.shape == fc.hi.shape == (h,)
    assert np.all(np.isfinite(fc.mean)) and np.all(np.isfinite(fc.lo)) and np.all(np.isfinite(fc.hi))
    assert np.all(fc.lo <= fc.mean + 1e-9) and np.all(fc.mean <= fc.hi + 1e-9)
    assert fc.level == 0.8
    if name == "constant" and alias not in ("lstm", "sba"):
        # a flat history has a flat forecast at its level (SBA deflates by design; the LSTM is learned)
        assert np.allclose(fc.mean, 7.0, atol=1e-6), fc.mean
    if name == "all-zero" and alias != "lstm":
        assert np.allclose(fc.mean, 0.0, atol=1e-9)


def test_wider_level_gives_wider_interval(alias, lstm_dir):  # noqa: F811
    m = build(alias, lstm_dir).fit(HISTORIES["seasonal-trend"])
    narrow, wide = m.predict(6, level=0.5), m.predict(6, level=0.95)
    assert np.all(wide.hi - wide.lo >= narrow.hi - narrow.lo - 1e-9)
    assert np.any(wide.hi - wide.lo > 0), "a noisy history must give a non-zero interval"


def test_misuse_is_refused(alias, lstm_dir):  # noqa: F811
    m = build(alias, lstm_dir)
    with pytest.raises(RuntimeError, match="fit"):
        m.predict(3)
    with pytest.raises(ValueError, match="NaN"):
        m.fit(np.array([1.0, np.nan, 2.0]))
    m.fit(HISTORIES["seasonal-trend"])
    with pytest.raises(ValueError, match="horizon"):
        m.predict(0)


def test_seasonal_models_follow_the_season():
    y = HISTORIES["seasonal-trend"]
    truth = 50 + 0.2 * np.arange(48, 60) + 8 * np.sin(2 * np.pi * np.arange(48, 60) / 12)
    for alias in ("ets", "theta", "arima", "ensemble", "seasonal-naive"):
        fc = make_forecaster(alias, season_length=12).forecast(y, 12)
        naive_err = np.mean(np.abs(truth - y[-1]))
        assert np.mean(np.abs(fc.mean - truth)) < 0.6 * naive_err, alias
