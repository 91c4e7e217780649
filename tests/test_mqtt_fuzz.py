"""Fuzzed inbound payloads: the handlers never crash, every bad message gets an answer with a reason,
and nothing already stored is lost. Runs the real handlers on a real store (no broker needed: the
broker only carries bytes; the MQTT path itself is covered in test_mqtt_broker.py)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartstock.sync.client import InboundMessage
from smartstock.sync.inbound import CommandRouter, SalesInbox, validate_sale
from smartstock.sync.topics import Topics

TOPICS = Topics("smartstock", "plant", "line1", "dev1")
SALES = TOPICS.sales_in

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
record_like = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=140), st.integers(), st.none()),
     "sku": st.one_of(st.text(max_size=70), st.integers()),
     "date": st.one_of(st.dates().map(str), st.text(max_size=12)),
     "quantity": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.text(max_size=3))},
    optional={"price": json_values, "qty": st.integers()})
payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    record_like.map(lambda r: json.dumps(r).encode()),
    st.lists(record_like, max_size=5).map(lambda rs: json.dumps({"request_id": "fz", "records": rs}).encode()),
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _is_valid(rec) -> bool:
    try:
        validate_sale(rec)
        return True
    except Exception:  # noqa: BLE001 - only InputError is expected; anything else fails below anyway
        return False


@FUZZ
@given(payload=payloads)
def test_fuzzed_sales_always_answered_with_reasons(store, payload):
    with store.transaction() as conn:  # a sale already cached must survive whatever arrives
        conn.execute("INSERT OR IGNORE INTO sales(sku, date, quantity, natural_key, imported_at) "
                     "VALUES ('KEEP', '2026-01-01', 3, 'mqtt:keep', 'x')")
    before = store.query_one("SELECT COUNT(*) FROM sales")[0]
    inbox = SalesInbox(store, TOPICS, max_payload_kb=1)
    reply = inbox.handle(InboundMessage(SALES, payload))
    body = reply.payload
    assert reply.topic == TOPICS.response("sales")
    json.dumps(body, allow_nan=False)  # the answer itself is valid JSON
    assert {"v", "device_id", "ts", "ok", "accepted", "duplicates", "rejected"} <= set(body)
    if not body["ok"]:
        assert body.get("error") or body["rejected"], "a refusal without a reason"
        assert all(r["reason"] for r in body["rejected"])
    stored = store.query_one("SELECT COUNT(*) FROM sales")[0]
    assert stored == before + len(body["accepted"])
    assert store.query_one("SELECT quantity FROM sales WHERE natural_key = 'mqtt:keep'")[0] == 3


@FUZZ
@given(payload=payloads, name=st.sampled_from(["ping", "sync-now", "nope", "set-threshold"]),
       retain=st.booleans())
def test_fuzzed_commands_always_answered_with_reasons(payload, name, retain):
    router = CommandRouter(TOPICS, max_payload_kb=1)

    def strict(args):
        if set(args) != {"x"}:
            raise ValueError("args must be exactly {\"x\": ...}")
        return {"x": args["x"]}

    router.register("set-threshold", strict)
    router.register("sync-now", lambda args: {"n": len(args)})
    reply = router.handle(InboundMessage(TOPICS.cmd(name), payload, retain=retain))
    if retain:
        assert reply is None
        return
    body = reply.payload
    json.dumps(body)
    assert reply.topic == TOPICS.response(name) and body["command"] == name
    assert body["ok"] is True or (isinstance(body["error"], str) and body["error"])
    if name == "nope":
        assert not body["ok"]


@given(st.lists(record_like, min_size=1, max_size=4))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_valid_records_are_exactly_the_accepted_ones(store, records):
    body = SalesInbox(store, TOPICS, 256).handle(InboundMessage(SALES, json.dumps({"records": records}).encode())).payload
    valid = [r for r in records if _is_valid(r)]
    assert len(body["accepted"]) + len(body["duplicates"]) == len(valid)
    assert len(body["rejected"]) == len(records) - len(valid)
    assert {str(r["id"]) for r in valid} == set(body["accepted"]) | set(body["duplicates"])
