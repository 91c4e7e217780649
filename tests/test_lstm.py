"""The global LSTM end to end: `smartstock train lstm` -> ONNX + TFLite + manifest (parity-checked
against Keras at export) -> forecasts on the device side without TensorFlow."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest

from smartstock.errors import ModelError
from smartstock.forecasting.lstm_manifest import load_demand_manifest
from tests.conftest import python_subprocess
from tests.fixtures.lstm import lstm_dir  # noqa: F401  (session fixture)


def test_export_writes_both_formats_with_parity(lstm_dir):  # noqa: F811
    man = load_demand_manifest(lstm_dir / "demand_lstm.onnx")
    assert man.kind == "demand-forecaster"
    assert (man.window, man.horizon, man.season_length, man.freq) == (24, 4, 12, "M")
    assert man.features == ["value", "season_sin", "season_cos"]
    assert set(man.artifacts) == {"onnx", "tflite"}
    for fmt in ("onnx", "tflite"):
        assert man.metrics[f"parity_max_abs_diff_{fmt}"] < 1e-3  # measured against Keras at export
    assert man.metrics["val_mae_scaled"] > 0


DEVICE_SIDE = r"""
import json, sys
import numpy as np
from pathlib import Path
from smartstock.forecasting.lstm import LstmRunner
from smartstock.forecasting.base import make_forecaster
from smartstock.runtime import decode_array
folder = Path(sys.argv[1])
out = {}
for name in ("demand_lstm.onnx", "demand_lstm.tflite"):
    r = LstmRunner(folder / name)
    wins = np.random.default_rng(0).gamma(2.0, 10.0, size=(64, r.manifest.window))
    out[name] = {"golden_diff": r.golden_diff, "pred": r.predict_windows(wins).tolist()}
    y = 50 + 10 * np.sin(2 * np.pi * np.arange(40) / 12)
    fc = make_forecaster("lstm", season_length=12, model_path=folder / name).forecast(y, 6)
    out[name]["fc"] = fc.mean.tolist()
    out[name]["lo_ok"] = bool(np.all(fc.lo <= fc.mean) and np.all(fc.mean <= fc.hi))
out["tf_loaded"] = sorted(m for m in ("tensorflow", "keras", "tf2onnx") if m in sys.modules)
print(json.dumps(out))
"""


def test_device_side_runs_onnx_and_litert_without_tensorflow(lstm_dir):  # noqa: F811
    p = python_subprocess(DEVICE_SIDE.replace("sys.argv[1]", repr(str(lstm_dir))), timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["tf_loaded"] == []
    onnx, tfl = out["demand_lstm.onnx"], out["demand_lstm.tflite"]
    assert onnx["golden_diff"] < 1e-3 and tfl["golden_diff"] < 1e-3
    np.testing.assert_allclose(onnx["pred"], tfl["pred"], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(onnx["fc"], tfl["fc"], rtol=1e-3, atol=1e-3)
    assert onnx["lo_ok"] and tfl["lo_ok"]
    assert np.all(np.array(onnx["pred"]) >= -5)  # scaled back to units, not left in scaled space


def test_parity_gate_refuses_a_model_that_disagrees_with_keras(tmp_path):
    from training.lstm_export import DemandExporter

    class FakeKeras:  # our own stand-in for the Keras model: only predict() is read
        def predict(self, x, verbose=0):
            return np.ones((len(x), 4), np.float32)

    class Recipe:
        window, horizon, season_length = 6, 4, 1

    ex = DemandExporter(FakeKeras(), tmp_path, recipe=Recipe(), features=["value"],
                        golden=np.zeros((2, 6, 1), np.float32), freq="W", metrics={})
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match="differs from Keras"):
        ex._register("onnx", tmp_path / "m.onnx", lambda x: np.ones((len(x), 4)) + 0.01)
    assert "onnx" not in ex.manifest.artifacts


def test_damaged_model_file_is_refused(lstm_dir, tmp_path):  # noqa: F811
    import shutil

    from smartstock.forecasting.lstm import LstmRunner

    for f in ("demand_lstm.onnx", "manifest.json"):
        shutil.copy(lstm_dir / f, tmp_path / f)
    with open(tmp_path / "demand_lstm.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(ModelError, match="sha256"):
        LstmRunner(tmp_path / "demand_lstm.onnx")
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(ModelError, match="manifest.json not found"):
        LstmRunner(tmp_path / "demand_lstm.onnx")


def test_cli_forecast_with_lstm(cli, lstm_dir, tmp_path):  # noqa: F811
    out = tmp_path / "fc.csv"
    r = cli("forecast", lstm_dir.parent / "sales.csv", "--model", "lstm", "--lstm-model",
            lstm_dir / "demand_lstm.tflite", "--horizon", "6", "--out", out, "--jobs", "1")
    assert r.rc == 0, r.err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 40 * 6 and all(float(x["lo"]) <= float(x["forecast"]) <= float(x["hi"]) for x in rows)
    r = cli("forecast", lstm_dir.parent / "sales.csv", "--model", "lstm", "--horizon", "6", "--out", out)
    assert r.rc == 2 and "--lstm-model" in r.err
