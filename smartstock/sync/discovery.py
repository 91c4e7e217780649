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
| model release | update | `{base}/model/state` | `installed_version`, `latest_version`, ... |
| sync now, republish | button | `{base}/cmd/sync-now`, `{base}/cmd/rebirth` | |

The caller republishes these on connect and whenever `{ha_prefix}/status` says `online`.
"""

from __future__ import annotations

import re
from typing import Any

from smartstock import __version__
from smartstock.sync.topics import Topics


def _object_id(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "x"


def node_id(device_id: str) -> str:
    """The discovery node id of a device: `smartstock_<device id with - as _>`."""
    return f"smartstock_{_object_id(device_id)}"


def device_block(topics: Topics) -> dict[str, Any]:
    return {"identifiers": [f"smartstock_{topics.device_id}"], "name": f"SmartStock {topics.device_id}",
            "manufacturer": "SmartStock", "model": "edge inspection appliance", "sw_version": __version__,
            "suggested_area": topics.line}


def discovery_messages(topics: Topics, *, ha_prefix: str = "homeassistant",
                       skus: list[str] | tuple[str, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of every entity's config message (publish retained)."""
    node = node_id(topics.device_id)
    common = {"device": device_block(topics), "availability_topic": topics.status,
              "payload_available": "online", "payload_not_available": "offline",
              "origin": {"name": "smartstock", "sw_version": __version__}}
    out: list[tuple[str, dict[str, Any]]] = []

    def add(component: str, obj: str, **cfg: Any) -> None:
        uid = f"{node}_{_object_id(obj)}"
        out.append((f"{ha_prefix}/{component}/{node}/{_object_id(obj)}/config",
                    {**common, "unique_id": uid, "object_id": uid, **cfg}))

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
        value_template="{{ value_json.count if value_json.count is defined else (value_json.alerts | default([]) | count) }}")
    add("update", "model", name="Defect model", state_topic=topics.model_state, device_class="firmware",
        entity_category="diagnostic")
    add("button", "sync_now", name="Sync now", command_topic=topics.cmd("sync-now"),
        payload_press='{"request_id":"homeassistant"}', entity_category="config")
    add("button", "republish", name="Republish state", command_topic=topics.cmd("rebirth"),
        payload_press='{"request_id":"homeassistant"}', entity_category="config")
    for sku in sorted(set(skus)):
        inv = topics.inventory(sku)
        for field, label, unit in (("on_hand", "on hand", "units"), ("reorder_point", "reorder point", "units"),
                                   ("days_of_cover", "days of cover", "d")):
            add("sensor", f"{sku}_{field}", name=f"{sku} {label}", state_topic=inv, unit_of_measurement=unit,
                value_template=f"{{{{ value_json.{field} }}}}", state_class="measurement", icon="mdi:package-variant")
    return out
