"""The OTA agent's worker: topics it subscribes, artifact waiting, deferral, timeouts (no broker:
a fake of our own subscription interface; the broker path is in test_ota_service.py)."""

from __future__ import annotations

import time

import pytest

from edge.ota_agent import OtaAgent
from smartstock.config import Config
from smartstock.sync.client import InboundMessage
from smartstock.sync.topics import Topics
from tests.conftest import wait_for
from tests.fixtures.ota import FakeLoop, OtaRig, frames, make_model_dir


class FakeSync:
    def __init__(self) -> None:
        self.handlers: dict[str, object] = {}

    def subscribe(self, topic, handler, qos=1):
        self.handlers[topic] = handler

    def deliver(self, topic: str, payload: bytes) -> None:
        self.handlers[topic](InboundMessage(topic=topic, payload=payload, retain=True))


@pytest.fixture
def setup(tmp_path, store):
    signer = OtaRig(tmp_path / "signer", store)  # only for its key and models
    cfg = Config.model_validate({
        "device": {"device_id": "dev1", "site": "p", "line": "l", "groups": ["hall-a"]},
        "vision": {"model": str(make_model_dir(tmp_path / "shipped", release=1))},
        "ota": {"keyring_dir": str(signer.keyring_dir), "trial_frames": 20, "artifact_timeout_s": 1.0}})
    topics = Topics.from_config(cfg.mqtt, cfg.device)
    agent = OtaAgent(cfg, tmp_path / "state", store, topics)
    loop = FakeLoop()
    loop.swap_classifier(agent.startup(cfg.vision.model))
    sync = FakeSync()
    agent.start(loop.swap_classifier, sync)
    yield signer, agent, loop, sync, topics
    agent.stop()


def test_subscribes_device_and_group_topics_and_installs_from_the_artifact_topic(setup):
    signer, agent, loop, sync, topics = setup
    assert wait_for(lambda: {topics.model_desired, "smartstock/groups/hall-a/model/desired"} <= set(sync.handlers))
    model = signer.model("m2", 2)
    env, rel = signer.sign(model, 2, devices=[], groups=["hall-a"])
    sync.deliver("smartstock/groups/hall-a/model/desired", env.to_json())
    art_topic = f"smartstock/groups/hall-a/model/artifact/{rel.artifact.sha256}"
    assert wait_for(lambda: art_topic in sync.handlers), "agent did not ask for the artifact on the group topic"
    sync.deliver(art_topic, model.read_bytes())
    assert wait_for(lambda: agent.installers["defect-classifier"].trial is not None)
    for i in range(10):
        loop.feed(frames(4, bright=False, seed=i))
    assert wait_for(lambda: loop.classifier.release == 2 and agent.installers["defect-classifier"].trial is None)
    sync.deliver(art_topic, model.read_bytes())   # re-delivered retained artifact: ignored
    sync.deliver("smartstock/groups/hall-a/model/desired", env.to_json())  # and the envelope: seen
    time.sleep(0.5)
    assert loop.classifier.release == 2 and agent.counters["installs"] == 1


def test_artifact_that_never_arrives_times_out_and_a_redelivery_retries(setup, store):
    signer, agent, loop, sync, topics = setup
    assert wait_for(lambda: topics.model_desired in sync.handlers)
    model = signer.model("m2", 2)
    env, rel = signer.sign(model, 2)
    sync.deliver(topics.model_desired, env.to_json())
    assert wait_for(lambda: store.query_one(
        "SELECT 1 FROM model_history WHERE status = 'refused' AND detail LIKE 'fetch_failed%did not arrive%'"))
    assert loop.classifier.release == 1
    sync.deliver(topics.model_desired, env.to_json())  # the same envelope again: tried again
    sync.deliver(topics.model_artifact(rel.artifact.sha256), model.read_bytes())
    assert wait_for(lambda: agent.installers["defect-classifier"].trial is not None)


def test_junk_on_the_desired_topic_is_refused_and_the_agent_keeps_going(setup, store):
    signer, agent, loop, sync, topics = setup
    assert wait_for(lambda: topics.model_desired in sync.handlers)
    # an empty message is how MQTT deletes a retained one (`ota rollout` withdraws a release so): not junk
    for junk in (b"", b"\xff\xfe", b"null", b"", b'{"v": 2}'):
        sync.deliver(topics.model_desired, junk)
    assert wait_for(lambda: agent.counters["refused"] == 3)
    assert agent._thread.is_alive() and loop.classifier.release == 1
    assert agent.counters["envelopes"] == 3


def test_a_new_demand_model_reaches_the_planner_by_a_call_and_the_shared_config_stays(tmp_path, store):
    """Install/commit and rollback of a demand model (the calls the installer makes) are told to the
    refresher, whose planner runs with that file; the config every component shares is not changed."""
    import threading
    from types import SimpleNamespace

    from edge.refresh import Refresher

    cfg = Config.model_validate({"device": {"device_id": "dev1"}})
    topics = Topics.from_config(cfg.mqtt, cfg.device)
    agent = OtaAgent(cfg, tmp_path / "state", store, topics)
    refresher = Refresher(store, cfg, topics, status=lambda: {}, camera=lambda: [],
                          stop_event=threading.Event(), isolate=False, demand_model=agent.demand_model)
    loop = FakeLoop()
    agent.start(loop.swap_classifier, None, on_demand_model=refresher.set_demand_model)
    try:
        demand = agent.installers["demand-forecaster"]
        new = tmp_path / "r2" / "demand_lstm.onnx"
        demand.swap(SimpleNamespace(path=new))          # committed: the planner uses it from the next refresh
        assert refresher.demand_model == new and refresher.planning_config().forecast.lstm_model == new
        assert cfg.forecast.lstm_model is None
        demand.swap(None)                                # rolled back to nothing installed: the configured one
        assert refresher.demand_model is None and refresher.planning_config() is cfg
    finally:
        agent.stop()


def test_demand_updates_that_cannot_load_are_reported_not_silently_skipped(tmp_path, store, monkeypatch, caplog):
    """A broken install (the demand kind's module fails to import): the defect model still updates,
    and the log, `{base}/model/state` and the agent's `unavailable` say demand updates are off and why."""
    import json

    from smartstock.ota import kinds

    monkeypatch.setitem(kinds._KINDS, "demand-forecaster", "smartstock.ota.kinds_demand_missing:DemandForecasterKind")
    cfg = Config.model_validate({"device": {"device_id": "dev1"}})
    topics = Topics.from_config(cfg.mqtt, cfg.device)
    with caplog.at_level("WARNING", logger="edge.ota_agent"):
        agent = OtaAgent(cfg, tmp_path / "state", store, topics)
    assert set(agent.installers) == {"defect-classifier"}
    assert "kinds_demand_missing" in agent.unavailable["demand-forecaster"]
    assert any("demand-forecaster models are disabled" in r.getMessage() for r in caplog.records)
    row = store.query_one("SELECT payload FROM outbox WHERE topic = ? ORDER BY id DESC LIMIT 1", (topics.model_state,))
    state = json.loads(row[0])["models"]["demand-forecaster"]
    assert state["status"] == "unavailable" and state["error"] == "unsupported_kind"
    assert "kinds_demand_missing" in state["detail"]
    agent.startup_demand()  # nothing to serve: no error
