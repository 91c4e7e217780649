"""One row per device, built from the latest message of each retained device topic (a pure function).

The topics are those of `smartstock.sync.topics.Topics` under `<prefix>/<site>/<line>/<device_id>/`:
`status` (`online`/`offline`), `state` (health figures), `model/state` (OTA), `alerts` (open alerts)
and `sync` (outbox counters). Every payload is hostile: a topic level that is not 1-64 letters,
digits, `_` or `-`, a payload over `MAX_PAYLOAD_BYTES`, JSON nested deeper than `MAX_DEPTH`, bad
JSON, a field of the wrong type or a `device_id` other than the topic's is counted in
`FleetView.counters` and named in the device's `problems`; the rest of the row is still built.
Fields the device does not publish today are listed in `unknown_fields` (a newer device, or junk).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from smartstock.sync.drain import COUNTER_NAMES
from smartstock.sync.payloads import SCHEMA_VERSION
from smartstock.sync.topics import split_device_topic

# The retained state of a device is about 1 KB; the alerts list of a device with every SKU alarming a
# few tens of KB. 256 KiB is the device's own inbound cap (mqtt.max_payload_kb).
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_DEPTH = 8          # the deepest real payload (model/state: models -> kind -> fields) is 3
MAX_DEVICES = 10_000   # rows kept; messages for more devices are counted and dropped
MAX_ALERTS_LISTED = 20
MAX_TEXT = 200
MAX_PROBLEMS = 10
MAX_CAMERAS = 32

SUFFIXES = ("status", "state", "model/state", "alerts", "sync")
COMMON = {"v", "device_id", "ts", "historical"}  # `historical`: a row the outbox published late
STATE_FIELDS = COMMON | {"model_id", "model_release", "provider", "camera", "cameras", "fps", "latency_ms_p50",
                         "latency_ms_p99", "parts", "dropped", "defect_rate", "backlog", "rss_mb", "groups"}
MODEL_FIELDS = COMMON | {"kind", "step_kind", "title", "installed_version", "latest_version", "in_progress",
                         "release_summary", "update_percentage", "status", "progress", "error", "detail", "serving",
                         "models"}
ALERTS_FIELDS = COMMON | {"alerts"}
# `sync` carries the outbox counters plus open-ended command/sales counters: any number is known there.
SYNC_FIELDS = COMMON | set(COUNTER_NAMES) | {"in_flight", "backlog", "backlog_bytes", "oldest_s"}
COUNTERS = ("messages", "bad_topic", "oversize", "bad_json", "too_deep", "wrong_type", "device_mismatch",
            "unknown_schema", "unknown_fields", "dropped_devices")


class Message(Protocol):
    """What build_rows reads of a message (smartstock.sync.client.InboundMessage has it)."""

    topic: str
    payload: bytes


@dataclass
class DeviceRow:
    device_id: str
    site: str
    line: str
    health: str = "unknown"            # online | offline | stale | unknown (no status message)
    online: bool | None = None         # the retained status topic; None when there is none
    stale: bool = False                # online, but no state for stale_minutes
    last_seen: str | None = None       # newest `ts` of any of its payloads (the device's clock)
    state_ts: str | None = None
    state_age_s: float | None = None
    model_id: str | None = None
    model_release: str | None = None
    ota_status: str | None = None
    ota_installed: str | None = None
    ota_latest: str | None = None
    ota_error: str | None = None       # the refusal/rollback code of the last step (smartstock/ota/refusal.py)
    ota_detail: str | None = None
    camera: str | None = None          # the worst camera: down > reconnecting > ok
    cameras: dict[str, str] = field(default_factory=dict)
    fps: float | None = None
    defect_rate: float | None = None
    open_alerts: int | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    backlog: int | None = None         # outbox rows waiting for the broker
    problems: list[str] = field(default_factory=list)
    unknown_fields: list[str] = field(default_factory=list)

    def flag(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text[:MAX_TEXT])


@dataclass
class FleetView:
    rows: list[DeviceRow]
    counters: dict[str, int]
    collected_at: str
    stale_minutes: float
    prefix: str = ""
    site: str | None = None
    broker_connected: bool = True

    def summary(self) -> dict[str, int]:
        out = {"devices": len(self.rows), "online": 0, "offline": 0, "stale": 0, "unknown": 0}
        for r in self.rows:
            out[r.health] += 1
        out["with_alerts"] = sum(1 for r in self.rows if r.open_alerts)
        out["with_problems"] = sum(1 for r in self.rows if r.problems)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"collected_at": self.collected_at, "prefix": self.prefix, "site": self.site,
                "stale_minutes": self.stale_minutes, "broker_connected": self.broker_connected,
                "summary": self.summary(), "counters": dict(self.counters), "devices": [asdict(r) for r in self.rows]}


def topic_filters(prefix: str, site: str | None = None, line: str | None = None) -> list[str]:
    """The subscription filters for every device's retained topics (one per suffix)."""
    base = f"{prefix.strip('/')}/{site or '+'}/{line or '+'}/+"
    return [f"{base}/{s}" for s in SUFFIXES]


def build_rows(messages: Iterable[Message], *, prefix: str = "smartstock", stale_minutes: float = 10.0,
               now: dt.datetime | None = None, site: str | None = None) -> FleetView:
    """Rows from messages in arrival order (a later message on a topic replaces an earlier one, as
    retained messages do); sorted by site, line, device id."""
    now = now or dt.datetime.now(dt.timezone.utc)
    counters = dict.fromkeys(COUNTERS, 0)
    latest: dict[str, bytes] = {}
    for m in messages:
        counters["messages"] += 1
        if not m.payload:
            latest.pop(m.topic, None)  # an empty retained message deletes the topic
        else:
            latest[m.topic] = m.payload
    rows: dict[tuple[str, str, str], DeviceRow] = {}
    for topic, payload in latest.items():
        where = _split(topic, prefix)
        if where is None:
            counters["bad_topic"] += 1
            continue
        key, suffix = where
        row = rows.get(key)
        if row is None:
            if len(rows) >= MAX_DEVICES:
                counters["dropped_devices"] += 1
                continue
            row = rows[key] = DeviceRow(device_id=key[2], site=key[0], line=key[1])
        _apply(row, suffix, payload, counters)
    out = sorted(rows.values(), key=lambda r: (r.site, r.line, r.device_id))
    for r in out:
        _judge(r, now, stale_minutes)
    return FleetView(rows=out, counters=counters, collected_at=_iso(now), stale_minutes=stale_minutes,
                     prefix=prefix.strip("/"), site=site)


# -- one message ------------------------------------------------------------------------------------
def _split(topic: str, prefix: str) -> tuple[tuple[str, str, str], str] | None:
    where = split_device_topic(prefix, topic)
    if where is None or where[3] not in SUFFIXES:
        return None
    return where[:3], where[3]


def _apply(row: DeviceRow, suffix: str, payload: bytes, counters: dict[str, int]) -> None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        counters["oversize"] += 1
        row.flag(f"{suffix}: payload over {MAX_PAYLOAD_BYTES // 1024} KiB ignored")
        return
    if suffix == "status":
        text = payload.strip().lower()
        if text in (b"online", b"offline"):
            row.online = text == b"online"
        else:
            counters["wrong_type"] += 1
            row.flag(f"status: {payload[:40]!r} is neither online nor offline")
        return
    doc = _decode(payload)
    if isinstance(doc, str):
        counters["too_deep" if doc == "too deep" else "bad_json"] += 1
        row.flag(f"{suffix}: {doc}")
        return
    if doc.get("device_id") != row.device_id:
        counters["device_mismatch"] += 1
        row.flag(f"{suffix}: device_id {str(doc.get('device_id'))[:64]!r} is not the topic's; ignored")
        return
    if doc.get("v") != SCHEMA_VERSION:
        counters["unknown_schema"] += 1
        row.flag(f"{suffix}: schema v={str(doc.get('v'))[:16]} (this tool reads v={SCHEMA_VERSION}); read as far as it goes")
    ts = _parse_ts(doc.get("ts"))
    if ts is None:
        counters["wrong_type"] += 1
        row.flag(f"{suffix}.ts: not an ISO time")
    elif row.last_seen is None or ts > _parse_ts(row.last_seen):  # type: ignore[operator]
        row.last_seen = _iso(ts)
    reader = {"state": _state, "model/state": _model, "alerts": _alerts, "sync": _sync}[suffix]
    known = {"state": STATE_FIELDS, "model/state": MODEL_FIELDS, "alerts": ALERTS_FIELDS, "sync": SYNC_FIELDS}[suffix]
    bad = reader(row, doc, ts)
    counters["wrong_type"] += len(bad)
    for name in bad:
        row.flag(f"{suffix}.{name}: wrong type or out of range")
    unknown = [k for k in doc if k not in known and not (suffix == "sync" and _is_num(doc[k]))]
    if unknown:
        counters["unknown_fields"] += len(unknown)
        for k in sorted(unknown)[:MAX_PROBLEMS]:
            name = f"{suffix}.{k[:64]}"
            if name not in row.unknown_fields:
                row.unknown_fields.append(name)


def _decode(payload: bytes) -> dict[str, Any] | str:
    """The JSON object, or a short reason why not."""
    try:
        doc = json.loads(payload)
    except RecursionError:
        return "too deep"
    except (UnicodeDecodeError, ValueError):
        return "not valid JSON"
    if not isinstance(doc, dict):
        return f"a JSON {type(doc).__name__}, not an object"
    return "too deep" if _depth(doc, 0) > MAX_DEPTH else doc


def _depth(obj: Any, d: int) -> int:
    if d > MAX_DEPTH:
        return d
    if isinstance(obj, dict):
        return max((_depth(v, d + 1) for v in obj.values()), default=d + 1)
    if isinstance(obj, list):
        return max((_depth(v, d + 1) for v in obj), default=d + 1)
    return d


def _state(row: DeviceRow, doc: dict[str, Any], ts: dt.datetime | None) -> list[str]:
    bad: list[str] = []
    row.state_ts = _iso(ts) if ts else None
    row.model_id = _text(doc, "model_id", bad)
    rel = doc.get("model_release")
    row.model_release = str(rel) if _is_num(rel) and not isinstance(rel, float) else _text(doc, "model_release", bad)
    row.camera = _text(doc, "camera", bad)
    row.fps = _number(doc, "fps", bad, 0.0, 1e6)
    row.defect_rate = _number(doc, "defect_rate", bad, 0.0, 1.0)
    backlog = _number(doc, "backlog", bad, 0.0, 1e12)
    if backlog is not None and row.backlog is None:  # the sync topic's figure is fresher and wins
        row.backlog = int(backlog)
    cams = doc.get("cameras")
    if isinstance(cams, list):  # one object per camera (id, sku, status, fps, ...), as devices publish it now
        row.cameras = {str(c["id"])[:64]: str(c["status"])[:32] for c in cams[:MAX_CAMERAS]
                       if isinstance(c, dict) and isinstance(c.get("id"), str) and isinstance(c.get("status"), str)}
        if len(row.cameras) != min(len(cams), MAX_CAMERAS):
            bad.append("cameras")
    elif isinstance(cams, dict):  # id -> status, as devices published it before
        row.cameras = {str(k)[:64]: str(v)[:32] for k, v in list(cams.items())[:MAX_CAMERAS]
                       if isinstance(v, str)}
    elif cams is not None:
        bad.append("cameras")
    return bad


def _model(row: DeviceRow, doc: dict[str, Any], _ts: dt.datetime | None) -> list[str]:
    bad: list[str] = []
    row.ota_status = _text(doc, "status", bad)
    row.ota_installed = _version(doc, "installed_version", bad)
    row.ota_latest = _version(doc, "latest_version", bad)
    row.ota_error = _text(doc, "error", bad)
    row.ota_detail = _text(doc, "detail", bad) or None
    return bad


def _alerts(row: DeviceRow, doc: dict[str, Any], _ts: dt.datetime | None) -> list[str]:
    items = doc.get("alerts")
    if not isinstance(items, list):
        return ["alerts"]
    row.open_alerts = len(items)
    row.alerts = []
    bad: list[str] = []
    for a in items[:MAX_ALERTS_LISTED]:
        if not isinstance(a, dict):
            bad.append("alerts[]")
            continue
        row.alerts.append({k: _text(a, k, bad) for k in ("kind", "severity", "sku", "message", "opened_at")})
    return bad


def _sync(row: DeviceRow, doc: dict[str, Any], _ts: dt.datetime | None) -> list[str]:
    bad: list[str] = []
    backlog = _number(doc, "backlog", bad, 0.0, 1e12)
    if backlog is not None:
        row.backlog = int(backlog)
    return bad


# -- the verdict ------------------------------------------------------------------------------------
def _judge(row: DeviceRow, now: dt.datetime, stale_minutes: float) -> None:
    state_ts = _parse_ts(row.state_ts)
    if state_ts is not None:
        row.state_age_s = round((now - state_ts).total_seconds(), 1)
        if row.state_age_s < -300:
            row.flag(f"state.ts is {-row.state_age_s:.0f} s in the future: the device clock is off")
    if row.online is None:
        row.health = "unknown"
    elif not row.online:
        row.health = "offline"
    else:
        row.stale = state_ts is None or (now - state_ts).total_seconds() > stale_minutes * 60.0
        row.health = "stale" if row.stale else "online"


# -- typed reads ------------------------------------------------------------------------------------
def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(doc: dict[str, Any], key: str, bad: list[str], lo: float, hi: float) -> float | None:
    v = doc.get(key)
    if v is None:
        return None
    if _is_num(v) and lo <= v <= hi:
        return float(v)
    bad.append(key)
    return None


def _text(doc: dict[str, Any], key: str, bad: list[str]) -> str | None:
    v = doc.get(key)
    if v is None:
        return None
    if isinstance(v, str):
        return v[:MAX_TEXT]
    bad.append(key)
    return None


def _version(doc: dict[str, Any], key: str, bad: list[str]) -> str | None:
    v = doc.get(key)
    return str(v) if _is_num(v) and not isinstance(v, float) else _text(doc, key, bad)


def _parse_ts(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
