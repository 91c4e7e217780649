"""Home Assistant's MQTT rules, checked against every discovery config and every payload the device
publishes in its states (fresh start with no plan, running with a plan, OTA in progress, refused,
rolled back, fallback), so a payload change cannot silently break HA again (issue 18).

Home Assistant itself is not installed (it needs Python 3.13 and minutes to install); the rules below
are the ones its MQTT integration applies, as far as they can be stated without it:
- an `update` entity's rendered JSON has only HA's keys (closed schema) and no null values;
- every key a `value_template` reads (`value_json.x`) is present in each payload on its state topic;
- a sensor with a `state_class` renders a number, or `None` (HA: unknown);
- a binary sensor renders its `payload_on`/`payload_off`;
- unique ids and discovery topics are unique, ids match HA's discovery topic pattern,
  `default_entity_id` is `<component>.<unique_id>` beside `object_id`.
Templates are rendered with Jinja2's immutable sandbox, the environment HA's templates run in.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edge.app import App
from edge.samples import write_parts
from edge.sync_worker import SyncService
from smartstock.config import Config
from smartstock.ota.refusal import DOWNGRADE, TRIAL_FAILED
from smartstock.store.stock import book
from smartstock.sync.discovery import UPDATE_KEYS, discovery_messages
from smartstock.sync.payloads import message
from smartstock.sync.topics import Topics
from tests.conftest import wait_for

SKU = "PCB-100"
SECOND_SKU = "pcb_100"  # normalises like SKU: the ids must still differ
# HA: homeassistant/components/mqtt/discovery.py, TOPIC_MATCHER
DISCOVERY_TOPIC = re.compile(r"^homeassistant/(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?"
                             r"(?P<object_id>[a-zA-Z0-9_-]+)/config$")
STATE_CLASSES = {"measurement", "total", "total_increasing", "measurement_angle"}
_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
_KEY_REF = re.compile(r"value_json\.([A-Za-z_]\w*)|value_json\[\s*['\"]([^'\"]+)['\"]\s*\]")


def template_keys(template: str) -> set[str]:
    """The payload keys a template reads by name (`value_json.x`, `value_json['x']`)."""
    return {a or b for a, b in _KEY_REF.findall(template)}


def render(template: str, payload: dict) -> str:
    """StrictUndefined: reading a missing key raises, where HA would log a warning and show unknown."""
    return _ENV.from_string(template).render(value_json=payload, value=json.dumps(payload))


def check_update_payload(rendered: str) -> dict:
    """HA's MQTT update JSON schema: closed, versions/texts are strings, in_progress a bool, 0..100."""
    data = json.loads(rendered)
    assert isinstance(data, dict), rendered
    assert set(data) <= set(UPDATE_KEYS), f"keys HA refuses: {set(data) - set(UPDATE_KEYS)}"
    for k in ("installed_version", "latest_version", "title", "release_summary", "release_url", "entity_picture"):
        if k in data:
            assert isinstance(data[k], str), f"{k} must be a string, got {data[k]!r}"
    if "in_progress" in data:
        assert isinstance(data["in_progress"], bool)
    if "update_percentage" in data:
        assert isinstance(data["update_percentage"], (int, float)) and 0 <= data["update_percentage"] <= 100
    return data


# -- the device in its states ------------------------------------------------------------------------
def _collect(store, into: dict[str, list[dict]], state: str) -> None:
    """Take what the device queued for MQTT (as if the broker acknowledged it) and file it by topic."""
    with store.transaction() as conn:
        rows = conn.execute("SELECT topic, payload FROM outbox ORDER BY id").fetchall()
        conn.execute("DELETE FROM outbox")
    for topic, body in rows:
        if "/events/" not in topic:
            into[topic].append({**json.loads(bytes(body)), "_state": state})


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ha")
    write_parts(tmp / "parts", 6, size=48)
    cfg = Config.model_validate({"device": {"device_id": "dev-1"}, "source": {"uri": str(tmp / "parts")},
                                 "inspection": {"sku": SKU}, "http": {"enabled": False}})
    app = App(cfg, tmp / "state")  # real OTA start-up: serves the shipped default model and reports it
    published: dict[str, list[dict]] = defaultdict(list)
    app.start()
    try:
        assert app.loop.done.wait(60)
        ref = app.refresher
        ref.isolate = False  # plan in-process: same planner, no child process in the test
        with app.store.transaction() as conn:
            book(conn, SECOND_SKU, "received", 40.0, ref="test")  # a second SKU the device knows

        def publish_all(state: str) -> None:
            ref.refresh_plans()
            ref.check_alerts(force_publish=True)
            ref.publish_state()
            _collect(app.store, published, state)

        publish_all("fresh start, no plan")
        rep = app.ota.reporter
        kind = "defect-classifier"
        steps = [("verifying", dict(release=7, progress=0)), ("downloading", dict(release=7, progress=30)),
                 ("installing", dict(release=7, progress=60)), ("trial", dict(release=7, progress=80))]
        for status, kw in steps:
            rep.report(kind, status, sha256="ab" * 32, model_id="m", **kw)
            _collect(app.store, published, f"OTA {status}")
        rep.report(kind, "refused", release=3, error=DOWNGRADE, detail="release 3 is not greater than 7")
        _collect(app.store, published, "OTA refused")
        rep.report(kind, "rolled_back", release=7, error=TRIAL_FAILED, detail="defect rate jumped")
        _collect(app.store, published, "OTA rolled back")
        rep.report(kind, "fallback", release=1, installed={"release": 1, "sha256": None, "model_id": "default"},
                   serving="default", detail="current: model file missing")
        _collect(app.store, published, "fallback")
        cfg.inventory.skus[SECOND_SKU] = {"annual_demand": 3650.0}  # a demand: now its plan has every figure
        publish_all("running with a plan")
        sync = SyncService(Config.model_validate({"mqtt": {"enabled": True}}).mqtt, cfg.device, app.store)
        published[app.topics.sync_stats].append({**message("dev-1", **sync.stats()), "_state": "running"})
        yield app.topics, published, app.store
    finally:
        app.stop()


@pytest.fixture(scope="module")
def configs(device):
    topics = device[0]
    return discovery_messages(topics, skus=[SKU, SECOND_SKU])


def test_every_state_published_what_the_entities_read(device, configs):
    topics, published, _ = device
    for _, cfg in configs:
        if "state_topic" in cfg:
            assert published.get(cfg["state_topic"]), f"nothing published on {cfg['state_topic']}"
    states = {p["_state"] for msgs in published.values() for p in msgs}
    assert {"fresh start, no plan", "OTA downloading", "fallback", "running with a plan"} <= states
    fresh = [p for p in published[topics.inventory(SKU)] if p["_state"] == "fresh start, no plan"]
    assert fresh and fresh[-1]["days_of_cover"] is None  # unknown, yet present
    planned = [p for p in published[topics.inventory(SECOND_SKU)] if p["_state"] == "running with a plan"]
    assert planned and isinstance(planned[-1]["days_of_cover"], (int, float)), json.dumps(planned[-1])


def check_every_template(configs, published) -> int:
    """Render every entity's template on every payload its state topic carried; the number checked."""
    checked = 0
    for topic, cfg in configs:
        tpl = cfg.get("value_template")
        if not tpl:
            continue
        for p in published.get(cfg["state_topic"], []):
            missing = template_keys(tpl) - set(p)
            assert not missing, f"{topic}: {cfg['state_topic']} in state '{p['_state']}' lacks {missing}"
            body = {k: v for k, v in p.items() if k != "_state"}
            out = render(tpl, body).strip()  # raises on a missing key or a null in arithmetic
            if cfg.get("state_class"):
                assert out == "None" or float(out) == float(out), f"{topic} rendered {out!r}"
            if topic.startswith("homeassistant/binary_sensor/"):
                assert out in (cfg["payload_on"], cfg["payload_off"])
            checked += 1
    return checked


def test_every_key_a_template_reads_is_in_every_payload(device, configs):
    _, published, _ = device
    assert check_every_template(configs, published) > 20


def test_update_entity_gets_only_keys_home_assistant_accepts(device, configs):
    topics, published, _ = device
    (cfg,) = [c for t, c in configs if t.startswith("homeassistant/update/")]
    states = published[topics.model_state]
    assert len(states) >= 7
    for p in states:
        raw = {k: v for k, v in p.items() if k != "_state"}
        assert {"v", "device_id", "ts", "status", "models"} <= set(raw)  # full detail stays for other consumers
        got = check_update_payload(render(cfg["value_template"], raw))
        assert got["installed_version"], f"state '{p['_state']}': no installed version"
        assert "latest_version" in got and "title" in got
        if p["_state"] == "OTA downloading":
            assert got["in_progress"] is True and got["update_percentage"] == 30
        if p["_state"] == "fallback":
            assert got["installed_version"] == "1" and got["in_progress"] is False


def test_update_template_leaves_out_nulls_and_foreign_keys():
    from smartstock.sync.discovery import UPDATE_TEMPLATE

    raw = {"v": 1, "device_id": "d", "installed_version": None, "latest_version": "4", "title": 'a "quoted" <model>',
           "in_progress": False, "update_percentage": None, "error": "x"}
    assert check_update_payload(render(UPDATE_TEMPLATE, raw)) == {"latest_version": "4",
                                                                  "title": 'a "quoted" <model>', "in_progress": False}


def check_discovery_rules(configs) -> None:
    """Topics HA matches, unique ids and topics, ids HA accepts, known state classes."""
    seen_topics, seen_uids = set(), set()
    for topic, cfg in configs:
        m = DISCOVERY_TOPIC.match(topic)
        assert m, f"HA would not match discovery topic {topic}"
        uid = cfg["unique_id"]
        assert uid not in seen_uids and topic not in seen_topics
        seen_uids.add(uid)
        seen_topics.add(topic)
        assert cfg["object_id"] == uid and cfg["default_entity_id"] == f"{m['component']}.{uid}"
        assert re.fullmatch(r"[a-z0-9_]+", uid)
        if "state_class" in cfg:
            assert cfg["state_class"] in STATE_CLASSES


def test_discovery_configs_follow_the_rules(configs):
    check_discovery_rules(configs)
    by_obj = {DISCOVERY_TOPIC.match(t)["object_id"]: c for t, c in configs}
    assert by_obj["open_alerts"]["state_class"] == "measurement"
    per_sku = [c["state_topic"].rsplit("/", 1)[1] for _, c in configs if "/inventory/" in c.get("state_topic", "")]
    assert sorted(per_sku) == sorted([SKU] * 3 + [SECOND_SKU] * 3)  # "PCB-100" and "pcb_100" kept apart


@pytest.mark.parametrize("a,b", [("PART-1", "part_1"), ("a-b", "a_b"), ("A", "a"), ("x y", "x_y"), ("-", "x")])
def test_ids_stay_apart_when_names_normalise_alike(a, b):
    def ids(device_id: str, skus: list[str]) -> set[tuple[str, str]]:
        msgs = discovery_messages(Topics("smartstock", "s", "l", device_id), skus=skus)
        return {(t, c["unique_id"]) for t, c in msgs}

    both = ids("dev", [a, b])
    assert len({t for t, _ in both}) == len(both) == len({u for _, u in both})
    assert not ids(a, []) & ids(b, [])  # devices a-b and a_b: no shared topic or unique_id


# -- several cameras ([[sources]]): entities per camera, read from {base}/camera/<id>/state ---------------
CAMERAS = ("left", "right-2")


@pytest.fixture(scope="module")
def multicam(tmp_path_factory):
    """Two real folder cameras on the shipped model; camera `right-2`'s folder vanishes mid-run."""
    tmp = tmp_path_factory.mktemp("ha-multicam")
    for cam in CAMERAS:
        write_parts(tmp / cam, 4, size=48)
    cfg = Config.model_validate({
        "device": {"device_id": "dev-2"}, "http": {"enabled": False}, "ota": {"enabled": False},
        "sources": [{"id": cam, "uri": str(tmp / cam), "sku": f"SKU-{i}", "fps": 40, "loop": True,
                     "stall_timeout_s": 0.3, "backoff_max_s": 1} for i, cam in enumerate(CAMERAS)]})
    app = App(cfg, tmp / "state")
    published: dict[str, list[dict]] = defaultdict(list)
    app.start()
    try:
        ref = app.refresher
        assert wait_for(lambda: all(c["counters"]["parts_inspected"] >= 4 for c in app.cameras_status()), 60)
        ref.publish_state()
        _collect(app.store, published, "both cameras running")
        shutil.rmtree(tmp / "right-2")
        assert wait_for(lambda: app.sources["right-2"].status != "ok", 30), app.cameras_status()
        ref.publish_state()
        _collect(app.store, published, "one camera down")
        yield app, published
    finally:
        app.stop()


def test_each_camera_gets_entities_that_read_its_own_retained_state(multicam):
    app, published = multicam
    configs = discovery_messages(app.topics, skus=["SKU-0", "SKU-1"], cameras=list(CAMERAS))
    per_camera = [(t, c) for t, c in configs if "/camera/" in c.get("state_topic", "")]
    for cam in CAMERAS:  # status + four sensors each, on that camera's topic
        mine = [c for _, c in per_camera if c["state_topic"] == app.topics.camera_state(cam)]
        assert len(mine) == 5 and {c["name"] for c in mine} >= {f"Camera {cam}", f"Camera {cam} frames per second"}
        states = published[app.topics.camera_state(cam)]
        assert [p["_state"] for p in states] == ["both cameras running", "one camera down"]
        assert all(p["id"] == cam and p["parts"] >= 4 for p in states)
    assert check_every_template(configs, published) >= 2 * 5 * 2
    check_discovery_rules(configs)
    down = {c["name"]: render(c["value_template"], published[c["state_topic"]][-1])
            for _, c in per_camera if c["name"] in ("Camera left", "Camera right-2")}
    assert down == {"Camera left": "ON", "Camera right-2": "OFF"}
    (state,) = [p for p in published[app.topics.state] if p["_state"] == "one camera down"]
    assert [(c["id"], c["status"] == "ok") for c in state["cameras"]] == [("left", True), ("right-2", False)]


@pytest.mark.parametrize("cams", [("x", "x_fps"), ("a-b", "a_b"), ("A", "a")])
def test_camera_entity_ids_stay_apart(cams):
    msgs = discovery_messages(Topics("smartstock", "s", "l", "dev"), skus=["x", "fps"], cameras=list(cams))
    assert len({c["unique_id"] for _, c in msgs}) == len(msgs) == len({t for t, _ in msgs})
