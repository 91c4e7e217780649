"""Every payload is plain JSON with `v`, `device_id`, `ts`; events also carry a unique `event_id`."""

from __future__ import annotations

import json
import uuid
from typing import Any

from smartstock.store.db import utcnow

SCHEMA_VERSION = 1


def message(device_id: str, **fields: Any) -> dict[str, Any]:
    """A state/telemetry payload (retained topics)."""
    return {"v": SCHEMA_VERSION, "device_id": device_id, "ts": fields.pop("ts", None) or utcnow(), **fields}


def event(device_id: str, *, event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """An event payload; `event_id` lets consumers drop the duplicates at-least-once delivery brings."""
    return {**message(device_id, **fields), "event_id": event_id or new_event_id()}


def new_event_id() -> str:
    return uuid.uuid4().hex


def dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=str).encode("utf-8")
