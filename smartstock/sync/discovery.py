"""Home Assistant MQTT discovery: the device and its entities appear in HA on their own.

One retained config message per entity on `{ha_prefix}/<component>/smartstock_<device_id>/<object>/config`,
all sharing one `device` block and the availability topic `{base}/status`. The values come from the
retained topics the device publishes anyway:

| entity | component | topic | field |
|---|---|---|---|
| defect rate, fps, latency p99 | sensor | `{base}/state` | `defect_rate`, `fps`, `latency_ms_p99` |
| camera | binary_sensor (connectivity) | `{base}/state` | `camera` (`ok` = on) |
| outbox backlog | sensor | `{base}/sync` | `backlog` |
| open alerts | sensor | `{base}/alerts` | `count` (else the length of `alerts`) |
| on hand / reorder point / days of cover per SKU | sensor | `{base}/inventory/<sku>` | `on_hand`, `reorder_point`, `days_of_cover` |
| per camera ([[sources]]): status, fps, defect rate, parts, last frame age | binary_sensor, sensor | `{base}/camera/<id>/state` | `status` (`ok` = on), `fps`, `defect_rate`, `parts`, `seconds_since_frame` |
| model release | update | `{base}/model/state` | `installed_version`, `latest_version`, ... |
| sync now, republish | button | `{base}/cmd/sync-now`, `{base}/cmd/rebirth` | |

The caller republishes these on connect and whenever `{ha_prefix}/status` says `online`.

Home Assistant's rules these configs follow (tests/test_ha_contract.py checks them against every
payload the device publishes): the `update` entity's JSON is a closed schema with non-null
versions, so its template passes only `UPDATE_KEYS` and leaves nulls out (`model/state` keeps its
full detail for other consumers); every key a template reads is in its payload (null when unknown,
see `INVENTORY_KEYS`); `default_entity_id` beside `object_id` (HA 2025.10 deprecated `object_id`);
ids stay apart: a name that normalising changed gets a short hash (32 bits) of the original.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from smartstock import __version__
from smartstock.sync.topics import Topics


# The keys HA's MQTT update entity accepts in its JSON payload (any other key fails the whole message).
UPDATE_KEYS = ("installed_version", "latest_version", "title", "release_summary", "release_url", "entity_picture",
               "in_progress", "update_percentage")
# What each SKU's sensors read from `{base}/inventory/<sku>`: (field, label, unit). The payload always
# carries these keys, null while there is no plan (HA shows "unknown" instead of logging a template warning).
INVENTORY_SENSORS = (("on_hand", "on hand", "units"), ("reorder_point", "reorder point", "units"),
                     ("days_of_cover", "days of cover", "d"))
INVENTORY_KEYS = tuple(f for f, _, _ in INVENTORY_SENSORS)
# Each camera's sensors on `{base}/camera/<id>/state`: (object suffix, field, label, unit, state class,
# template). Object ids are `camera_<camera id>_<suffix>`; no suffix ends with `_<another suffix>`, so
# cameras `x` and `x_fps` cannot collide.
CAMERA_SENSORS = (
    ("fps", "fps", "frames per second", "fps", "measurement", "{{ value_json.fps }}"),
    ("defect_rate", "defect_rate", "defect rate", "%", "measurement", "{{ (value_json.defect_rate * 100) | round(2) }}"),
    ("parts", "parts", "parts inspected", "parts", "total_increasing", "{{ value_json.parts }}"),
    ("last_frame", "seconds_since_frame", "last frame age", "s", "measurement", "{{ value_json.seconds_since_frame }}"),
)

# Renders only UPDATE_KEYS that are present and not null, as one JSON object (HA parses the result).
UPDATE_TEMPLATE = (
    "{% set ns = namespace(parts=[]) %}"
    "{% for k in " + repr(list(UPDATE_KEYS)) + " %}"
    "{% if value_json[k] is defined and value_json[k] is not none %}"
    "{% set ns.parts = ns.parts + [(k | tojson) ~ ':' ~ (value_json[k] | tojson)] %}"
    "{% endif %}{% endfor %}"
    "{{ '{' ~ (ns.parts | join(',')) ~ '}' }}"
)


def object_id(text: str) -> str:
    """`text` lower-cased with runs of other characters as `_`; when that changed the name, a short hash
    of the original follows, so `PART-1` and `part_1` (or device ids `a-b` and `a_b`) stay apart."""
    norm = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "x"
    if norm == text:
        return norm
    return f"{norm}_{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"


def node_id(device_id: str) -> str:
    """The discovery node id of a device: `smartstock_<object_id(device id)>`."""
    return f"smartstock_{object_id(device_id)}"


def device_block(topics: Topics) -> dict[str, Any]:
    return {"identifiers": [f"smartstock_{topics.device_id}"], "name": f"SmartStock {topics.device_id}",
            "manufacturer": "SmartStock", "model": "edge inspection appliance", "sw_version": __version__,
            "suggested_area": topics.line}


def discovery_messages(topics: Topics, *, ha_prefix: str = "homeassistant", skus: list[str] | tuple[str, ...] = (),
                       cameras: list[str] | tuple[str, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of every entity's config message (publish retained). `cameras`: the camera ids of
    a device with several ([[sources]]); each gets its own entities (the one-camera shortcut needs none:
    the device's own sensors are its camera's)."""
    node = node_id(topics.device_id)
    common = {"device": device_block(topics), "availability_topic": topics.status,
              "payload_available": "online", "payload_not_available": "offline",
              "origin": {"name": "smartstock", "sw_version": __version__}}
    out: list[tuple[str, dict[str, Any]]] = []

    def add(component: str, obj: str, **cfg: Any) -> None:
        uid = f"{node}_{obj}"
        out.append((f"{ha_prefix}/{component}/{node}/{obj}/config",
                    {**common, "unique_id": uid, "object_id": uid, "default_entity_id": f"{component}.{uid}", **cfg}))

    state = topics.state
    add("sensor", "defect_rate", name="Defect rate", state_topic=state, unit_of_measurement="%",
        value_template="{{ (value_json.defect_rate * 100) | round(2) }}", state_class="measurement",
        icon="mdi:alert-decagram")
    add("sensor", "fps", name="Frames per second", state_topic=state, unit_of_measurement="fps",
        value_template="{{ value_json.fps }}", state_class="measurement", icon="mdi:camera-timer")
    add("sensor", "latency_p99", name="Inference latency p99", state_topic=state, unit_of_measurement="ms",
        value_template="{{ value_json.latency_ms_p99 }}", state_class="measurement", entity_category="diagnostic")
    add("binary_sensor", "camera", name="Camera", state_topic=state, device_class="connectivity",
        value_template="{{ 'ON' if value_json.camera == 'ok' else 'OFF' }}", payload_on="ON", payload_off="OFF")
    add("sensor", "outbox_backlog", name="Outbox backlog", state_topic=topics.sync_stats, unit_of_measurement="msgs",
        value_template="{{ value_json.backlog }}", state_class="measurement", entity_category="diagnostic")
    add("sensor", "open_alerts", name="Open alerts", state_topic=topics.alerts, icon="mdi:bell-alert",
        value_template="{{ value_json.alerts | count }}", state_class="measurement")
    add("update", "model", name="Defect model", state_topic=topics.model_state, device_class="firmware",
        value_template=UPDATE_TEMPLATE, entity_category="diagnostic")
    add("button", "sync_now", name="Sync now", command_topic=topics.cmd("sync-now"),
        payload_press='{"request_id":"homeassistant"}', entity_category="config")
    add("button", "republish", name="Republish state", command_topic=topics.cmd("rebirth"),
        payload_press='{"request_id":"homeassistant"}', entity_category="config")
    for cam in dict.fromkeys(cameras):
        cam_topic, oid = topics.camera_state(cam), f"camera_{object_id(cam)}"
        add("binary_sensor", f"{oid}_status", name=f"Camera {cam}", state_topic=cam_topic, device_class="connectivity",
            value_template="{{ 'ON' if value_json.status == 'ok' else 'OFF' }}", payload_on="ON", payload_off="OFF")
        for suffix, _field, label, unit, state_class, template in CAMERA_SENSORS:
            add("sensor", f"{oid}_{suffix}", name=f"Camera {cam} {label}", state_topic=cam_topic,
                unit_of_measurement=unit, value_template=template, state_class=state_class, icon="mdi:cctv",
                **({"entity_category": "diagnostic"} if suffix == "last_frame" else {}))
    for sku in sorted(set(skus)):
        inv = topics.inventory(sku)
        for field, label, unit in INVENTORY_SENSORS:  # `<sku id>_<field>`: no field ends with `_<another field>`
            add("sensor", f"{object_id(sku)}_{field}", name=f"{sku} {label}", state_topic=inv,
                unit_of_measurement=unit, value_template=f"{{{{ value_json.{field} }}}}", state_class="measurement",
                icon="mdi:package-variant")
    return out
