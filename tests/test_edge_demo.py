"""The appliance step of `smartstock demo`: the real service on the sample parts with the exported test
model, after the inventory steps, on the same store; a local mosquitto sees what the sync publishes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.app import App
from edge.demo_appliance import SAMPLE_PARTS, run_appliance
from edge.demo import DEMO_MOVEMENTS, STEPS, run_demo

N = 30


@pytest.fixture(scope="module")
def model_file(request) -> Path:
    return sorted(Path(request.getfixturevalue("defect_model_dir")).glob("*.onnx"))[0]


def test_sample_parts_are_small_and_labelled():
    pngs = sorted(SAMPLE_PARTS.glob("*.png"))
    assert len(pngs) == 60 and sum(p.stat().st_size for p in pngs) < 400_000
    labels = (SAMPLE_PARTS / "labels.csv").read_text().splitlines()[1:]
    assert {line.split(",")[0] for line in labels} == {p.name for p in pngs}


def test_demo_appliance_step_runs_the_service_on_the_demo_store(tmp_path, model_file):
    said: list[str] = []
    steps = [(n, f) for n, f in STEPS if n != "appliance"]
    steps.append(("appliance", lambda ctx: run_appliance(ctx, said.append, model=model_file, parts_total=N, fps=40)))
    out = tmp_path / "demo"
    run_demo(out, say=said.append, steps=steps)
    status = json.loads((out / "status.json").read_text())
    assert status["counters"]["parts_inspected"] == N and status["healthy"]
    gear = status["stock"]["GEAR-A"]
    booked = {k: q for s, k, q in DEMO_MOVEMENTS if s == "GEAR-A"}
    assert gear["produced"] + gear["scrapped"] == booked["produced"] + booked["scrapped"] + N
    assert any(p["sku"] == "GEAR-A" and p.get("reorder_point") for p in status["plans"])
    assert "smartstock_parts_inspected_total" in (out / "metrics.txt").read_text()
    summary = json.loads((out / "appliance.json").read_text())
    assert summary["healthz"].startswith("ok")
    text = "\n".join(said)
    assert "status page http://127.0.0.1:" in text and str(out / "status.json") in text
    if "mqtt_topics" in summary and hasattr(App, "start_sync"):  # the MQTT sync step is part of the app
        events = [t for t in summary["mqtt_topics"] if t.endswith("/events/inspection")]
        assert events and summary["mqtt_topics"][events[0]] >= N  # every part reached the broker
    else:
        assert status["outbox"]["rows"] >= N and ("outbox" in text)
