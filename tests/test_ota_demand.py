"""The same signed path updates the demand LSTM (kind demand-forecaster): shipped model -> release 2,
judged by a shadow backtest on the device's own sales history."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from smartstock.config import OtaConfig
from smartstock.ota.install import Installer
from smartstock.ota.keys import Keyring, generate_keypair, load_private_key
from smartstock.ota.kinds_demand import DemandForecasterKind
from smartstock.ota.refusal import UpdateRefused
from smartstock.ota.report import StateReporter
from smartstock.ota.sign import sign_model
from smartstock.ota.trial import TrialLimits
from smartstock.ota.updater import Updater
from tests.conftest import ROOT

SHIPPED = ROOT / "models" / "demand" / "demand_lstm.onnx"
pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason="models/demand not built (make models)")


def variant(dst: Path, release: int, *, bias_shift: float = 0.0, weight_scale: float = 1.0,
            manifest_edit: dict | None = None) -> Path:
    """A new release of the shipped LSTM with edited output-layer weights; goldens recomputed, so it is
    internally consistent (what a retrain would export)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from smartstock.runtime import decode_array, encode_array

    dst.mkdir(parents=True)
    model = onnx.load(str(SHIPPED))
    for init in model.graph.initializer:
        if init.name.startswith("functional_1/forecast_1/"):
            arr = numpy_helper.to_array(init).astype(np.float32)
            arr = arr * weight_scale + (bias_shift if "BiasAdd" in init.name else 0.0)
            init.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), init.name))
    path = dst / SHIPPED.name
    onnx.save(model, str(path))
    m = json.loads((SHIPPED.parent / "manifest.json").read_text())
    x = decode_array(m["golden_inputs"]).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    data = path.read_bytes()
    m["release"] = release
    m["artifacts"] = {"onnx": {**m["artifacts"]["onnx"], "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                               "golden_outputs": encode_array(out)}}
    m.update(manifest_edit or {})
    (dst / "manifest.json").write_text(json.dumps(m, indent=1))
    return path


@pytest.fixture
def device(tmp_path, store):
    # 3.5 years of seasonal daily sales for a few SKUs (monthly buckets: window 24 + horizon 8 needs 32+)
    rng = np.random.default_rng(1)
    day0 = dt.date(2024, 1, 1)
    rows = []
    for k in range(4):
        for d in range(1280):
            day = day0 + dt.timedelta(days=d)
            q = max(0.0, 20 + 10 * k + 8 * np.sin(2 * np.pi * day.month / 12) + rng.normal(0, 2))
            rows.append((f"SKU-{k}", day.isoformat(), q, f"n{k}-{d}", "now"))
    with store.transaction() as conn:
        conn.executemany("INSERT INTO sales(sku, date, quantity, natural_key, imported_at) VALUES (?, ?, ?, ?, ?)", rows)
    from edge.ota_agent import sales_history

    keys = tmp_path / "keys"
    priv, pub = generate_keypair(keys, "tech")
    served: list = []
    inst = Installer(tmp_path / "state", DemandForecasterKind(history=lambda: sales_history(store, "M")),
                     StateReporter(store, "t/model/state", "dev1"), swap=served.append, limits=TrialLimits())
    shipped = tmp_path / "shipped"
    shutil.copytree(SHIPPED.parent, shipped)
    inst.startup(shipped / SHIPPED.name)
    from smartstock.config import DeviceConfig

    upd = Updater(device=DeviceConfig(device_id="dev1"), ota=OtaConfig(keyring_dir=keys), state_dir=tmp_path / "state",
                  reporter=inst.reporter, installers={"demand-forecaster": inst}, keyring=Keyring(keys))
    key = load_private_key(priv)

    def push(path: Path, release: int):
        env, _ = sign_model(path, release=release, key=key, key_id="tech", devices=["dev1"])
        p = upd.offer(env.to_json())
        upd.install(p, upd.stage(p, path.read_bytes()))
        upd.poll()
        return p

    return inst, served, push, tmp_path


def test_better_or_equal_demand_model_is_committed(device):
    inst, served, push, tmp = device
    p = push(variant(tmp / "r2", 2, weight_scale=1.001), 2)
    assert inst.serving.release == 2 and inst.slots.target("current") == p.sha256
    assert served[-1].path.name == SHIPPED.name and served[-1].release == 2   # forecast.lstm_model -> new file
    detail = [h for h in inst.reporter.store.query("SELECT status, detail FROM model_history") if h[0] == "committed"][0][1]
    assert "backtest on 4 local series" in detail


def test_worse_demand_model_is_rolled_back(device):
    inst, served, push, tmp = device
    push(variant(tmp / "r2", 2, bias_shift=3.0), 2)   # consistent with its goldens, but biased on real data
    assert inst.serving.release == 1 and inst.slots.target("current") is None
    row = inst.reporter.store.query_one("SELECT status, detail FROM model_history ORDER BY id DESC LIMIT 1")
    assert row[0] == "rolled_back" and "backtest" in row[1]
    assert served[-1].release == 1                                              # back on the shipped model


def test_demand_model_with_another_window_is_refused(device):
    inst, served, push, tmp = device
    with pytest.raises(UpdateRefused) as ei:
        push(variant(tmp / "r2", 2, weight_scale=1.001, manifest_edit={"window": 12}), 2)
    assert ei.value.reason == "wrong_input" and inst.serving.release == 1 and not served
