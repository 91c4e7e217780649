"""Inbound MQTT: sales records and commands, validated at the boundary, each answered.

Commands arrive on `{base}/cmd/<name>` as JSON `{"request_id": "...", "args": {...}}` (both optional;
an empty payload is allowed) and are answered on `{base}/response/<name>` (or the MQTT 5 response
topic, with its correlation data) as `{"v", "device_id", "ts", "request_id", "command", "ok",
"result" | "error"}`. Retained commands are ignored (a retained command would re-run on every
reconnect). Payloads over `mqtt.max_payload_kb` are refused unread.

Sales records arrive on the sales topic as one record, a JSON array of records, or
`{"request_id": "...", "records": [...]}`; a record is
`{"id": "...", "sku": "...", "date": "YYYY-MM-DD", "quantity": n, "price": p?}`. Good records are
cached in the sales table (natural key `mqtt:<id>`, so a re-sent record is a duplicate, not a second
sale); the answer on `{base}/response/sales` lists accepted, duplicate and rejected records with the
reason for each rejection.

Handlers here only validate, store and build replies: the caller (edge) publishes the reply.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smartstock.errors import InputError
from smartstock.ingest import MAX_QUANTITY, date_problem
from smartstock.sku import SKU_RULE, sku_problem
from smartstock.store.db import Store
from smartstock.sync.client import InboundMessage
from smartstock.sync.payloads import message
from smartstock.sync.topics import Topics

logger = logging.getLogger(__name__)

CommandHandler = Callable[[dict[str, Any]], "dict[str, Any] | None"]
_COMMAND_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SALES_FIELDS = ("id", "sku", "date", "quantity", "price")
MAX_RECORDS = 10_000


@dataclass(frozen=True)
class Reply:
    """A message to publish in answer to an inbound one."""

    topic: str
    payload: dict[str, Any]
    correlation_data: bytes | None = None


def _too_big(msg: InboundMessage, max_bytes: int) -> str | None:
    if len(msg.payload) > max_bytes:
        return (f"payload is {len(msg.payload) / 1024:.1f} KB, over the limit mqtt.max_payload_kb = "
                f"{max_bytes // 1024}; send smaller messages")
    return None


def _parse_json(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(f"payload is not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"payload is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise InputError("payload is nested too deeply") from None
    except ValueError as e:  # e.g. an integer of thousands of digits (int() refuses it)
        raise InputError(f"payload is not valid JSON: {e}") from None


def _request_id(obj: Any) -> str | None:
    rid = obj.get("request_id") if isinstance(obj, dict) else None
    if rid is None:
        return None
    if not isinstance(rid, str) or not 0 < len(rid) <= 128:
        raise InputError("request_id must be a string of 1 to 128 characters")
    return rid


class CommandRouter:
    """Command name -> handler registered by the app; answers every non-retained command."""

    def __init__(self, topics: Topics, max_payload_kb: int) -> None:
        self.topics = topics
        self.max_bytes = max_payload_kb * 1024
        self._handlers: dict[str, CommandHandler] = {}
        self._started = time.monotonic()
        self.counters = {"commands": 0, "command_errors": 0, "retained_ignored": 0}
        self.register("ping", self._ping)

    def register(self, name: str, handler: CommandHandler) -> None:
        if not _COMMAND_NAME.match(name):
            raise ValueError(f"command name {name!r} must be lower-case letters, digits, - or _ (max 32)")
        self._handlers[name] = handler

    @property
    def names(self) -> list[str]:
        return sorted(self._handlers)

    def _ping(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "uptime_s": round(time.monotonic() - self._started, 1)}

    def handle(self, msg: InboundMessage) -> Reply | None:
        """The reply to publish, or None for a retained (ignored) command or a foreign topic."""
        name = self.topics.cmd_name(msg.topic)
        if name is None:
            return None
        if msg.retain:
            self.counters["retained_ignored"] += 1
            logger.warning("command %s arrived retained and is ignored (publish commands with retain=false)", name)
            return None
        self.counters["commands"] += 1
        request_id: str | None = None
        try:
            reason = _too_big(msg, self.max_bytes)
            if reason:
                raise InputError(reason)
            obj = _parse_json(msg.payload) if msg.payload.strip() else {}
            if not isinstance(obj, dict):
                raise InputError(f"payload must be a JSON object like {{\"request_id\": \"r1\", \"args\": {{}}}}, "
                                 f"got {type(obj).__name__}")
            request_id = _request_id(obj)
            if name not in self._handlers:
                raise InputError(f"unknown command {name!r}; this device knows: {', '.join(self.names)}")
            extra = sorted(set(obj) - {"request_id", "args"})
            if extra:
                raise InputError(f"unknown field(s) {', '.join(map(repr, extra))}; put command arguments under \"args\"")
            args = obj.get("args", {})
            if not isinstance(args, dict):
                raise InputError("args must be a JSON object")
            result = self._handlers[name](args)
            body = {"ok": True, "result": result if result is not None else {}}
        except (InputError, ValueError, TypeError, KeyError) as e:
            self.counters["command_errors"] += 1
            text = str(e) if not isinstance(e, KeyError) else f"missing argument {e}"
            body = {"ok": False, "error": text}
        except Exception as e:  # a handler bug is answered, logged, and never kills the connection
            self.counters["command_errors"] += 1
            logger.exception("command %s failed", name)
            body = {"ok": False, "error": f"internal error ({type(e).__name__}); see the device log"}
        payload = message(self.topics.device_id, request_id=request_id, command=name, **body)
        return Reply(self.topics.reply_topic(msg.response_topic, name), payload, msg.correlation_data)


def parse_set_threshold(args: dict[str, Any]) -> tuple[str, float]:
    """Validate `set-threshold` args `{"label": "defect", "threshold": 0.7}`."""
    label, value = args.get("label"), args.get("threshold")
    if not isinstance(label, str) or not label:
        raise InputError("args.label must be the class label, e.g. \"defect\"")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise InputError(f"args.threshold must be a number between 0 and 1, got {value!r}")
    return label, float(value)


def parse_label(args: dict[str, Any]) -> tuple[str, str]:
    """Validate `label` args `{"id": "<32 hex snapshot id>", "label": "scratch"}` (hostile input: only
    these two fields, an id of the store's own form, a short plain label; never a path)."""
    from smartstock.store.snapshots import check_label, check_snapshot_id

    extra = sorted(set(args) - {"id", "label"})
    if extra:
        raise InputError(f"unknown argument(s) {', '.join(repr(str(k)[:32]) for k in extra)}; expected id and label")
    return check_snapshot_id(args.get("id")), check_label(args.get("label"))


# -- sales -----------------------------------------------------------------------------------
def validate_sale(rec: Any) -> dict[str, Any]:
    """One sales record, normalised; InputError naming the field and what is expected."""
    if not isinstance(rec, dict):
        raise InputError(f"a record must be a JSON object with {', '.join(SALES_FIELDS)}, got {type(rec).__name__}")
    unknown = sorted(set(rec) - set(SALES_FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(map(repr, unknown))}; expected {', '.join(SALES_FIELDS)}")
    rid = rec.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or not 0 < len(str(rid)) <= 128:
        raise InputError("id: required, a string of 1 to 128 characters unique per sale (it makes re-sends idempotent)")
    sku = rec.get("sku")
    if sku_problem(sku):
        raise InputError(f"sku: required, {SKU_RULE}")
    date = rec.get("date")
    if not isinstance(date, str) or not _DATE.match(date):
        raise InputError(f"date: required as YYYY-MM-DD, got {date!r}")
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        raise InputError(f"date: {date!r} is not a calendar date") from None
    why = date_problem(day)
    if why:
        raise InputError(f"date: {date} {why}")
    qty = rec.get("quantity")
    if isinstance(qty, bool) or not isinstance(qty, (int, float)) or not math.isfinite(qty) or qty < 0:
        raise InputError(f"quantity: required, a finite number >= 0 (returns are booked as adjustments), got {qty!r}")
    if qty > MAX_QUANTITY:
        raise InputError(f"quantity: {qty!r} is implausibly large (more than {MAX_QUANTITY:g} units in one record)")
    price = rec.get("price")
    if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float))
                              or not math.isfinite(price) or price < 0):
        raise InputError(f"price: a finite number >= 0 or absent, got {price!r}")
    return {"id": str(rid), "sku": sku, "date": date, "quantity": float(qty),
            "price": None if price is None else float(price)}


def _records(obj: Any) -> tuple[str | None, list[Any]]:
    if isinstance(obj, list):
        return None, obj
    if isinstance(obj, dict) and "records" in obj:
        extra = sorted(set(obj) - {"request_id", "records"})
        if extra:
            raise InputError(f"unknown field(s) {', '.join(map(repr, extra))} beside \"records\"")
        if not isinstance(obj["records"], list):
            raise InputError("records must be a JSON array of sales records")
        return _request_id(obj), obj["records"]
    if isinstance(obj, dict):
        rid = obj.get("id")
        return (str(rid) if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None), [obj]
    raise InputError(f"payload must be a sales record, an array of records or {{\"records\": [...]}}, "
                     f"got {type(obj).__name__}")


def store_sales(store: Store, records: list[dict[str, Any]]) -> list[bool]:
    """Insert validated records in one transaction (the sales import's own insert, natural key
    `mqtt:<id>`); True per new row, False per duplicate."""
    from smartstock.store.sales import Sale, insert_sales

    with store.transaction() as conn:
        return [insert_sales(conn, [Sale(r["sku"], dt.date.fromisoformat(r["date"]), r["quantity"], r["price"],
                                         f"mqtt:{r['id']}")], source="mqtt") == 1 for r in records]


class SalesInbox:
    """Validates, caches and answers sales records arriving over MQTT."""

    def __init__(self, store: Store, topics: Topics, max_payload_kb: int) -> None:
        self.store = store
        self.topics = topics
        self.max_bytes = max_payload_kb * 1024
        self.counters = {"sales_messages": 0, "sales_accepted": 0, "sales_duplicates": 0, "sales_rejected": 0}

    def handle(self, msg: InboundMessage) -> Reply:
        self.counters["sales_messages"] += 1
        body: dict[str, Any]
        request_id = None
        try:
            reason = _too_big(msg, self.max_bytes)
            if reason:
                raise InputError(reason)
            request_id, items = _records(_parse_json(msg.payload))
            if not items:
                raise InputError("no records in the message")
            if len(items) > MAX_RECORDS:
                raise InputError(f"{len(items)} records in one message; send at most {MAX_RECORDS}")
            good, rejected = [], []
            for i, item in enumerate(items):
                try:
                    good.append(validate_sale(item))
                except InputError as e:
                    rid = item.get("id") if isinstance(item, dict) else None
                    rejected.append({"index": i, "id": rid if isinstance(rid, (str, int)) else None, "reason": str(e)})
            fresh = store_sales(self.store, good) if good else []
            accepted = [r["id"] for r, new in zip(good, fresh) if new]
            dups = [r["id"] for r, new in zip(good, fresh) if not new]
            self.counters["sales_accepted"] += len(accepted)
            self.counters["sales_duplicates"] += len(dups)
            self.counters["sales_rejected"] += len(rejected)
            if rejected:
                logger.warning("sales on %s: %d record(s) rejected, first: %s", msg.topic, len(rejected),
                               rejected[0]["reason"])
            body = {"ok": not rejected, "accepted": accepted, "duplicates": dups, "rejected": rejected}
            if rejected and len(rejected) == len(items) == 1:
                body["error"] = rejected[0]["reason"]
        except InputError as e:
            self.counters["sales_rejected"] += 1
            logger.warning("sales on %s refused: %s", msg.topic, e)
            body = {"ok": False, "error": str(e), "accepted": [], "duplicates": [], "rejected": []}
        payload = message(self.topics.device_id, request_id=request_id, **body)
        return Reply(self.topics.reply_topic(msg.response_topic, "sales"), payload, msg.correlation_data)
