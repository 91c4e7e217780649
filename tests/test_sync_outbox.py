"""Outbox rules and the drainer's bookkeeping on a real SQLite store, with a recording publisher
(a fake of our own `PublishFn` interface, so window, acks and rewinds can be driven step by step)."""

from __future__ import annotations

import json

import pytest

from smartstock.store import open_store
from smartstock.sync import outbox
from smartstock.sync.drain import OutboxDrainer
from smartstock.sync.outbox import PRIORITY_EVENT, PRIORITY_STATE, PRIORITY_TELEMETRY


class Recorder:
    """Publishes nowhere; hands out message ids like paho and remembers what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str, bytes, list | None]] = []
        self.refuse = False
        self._mid = 0

    def __call__(self, topic, payload, qos, retain, props):
        if "+" in topic:  # paho checks the topic before anything else
            raise ValueError("Publish topic cannot contain wildcards.")
        if self.refuse:
            return None
        self._mid += 1
        self.sent.append((self._mid, topic, payload, props))
        return self._mid

    def ids(self) -> list[str]:
        return [json.loads(p)["n"] for _m, _t, p, _pr in self.sent]


def fill(store, n: int, topic: str = "t/events", start: int = 0, **kw) -> None:
    with store.transaction() as conn:
        for i in range(start, start + n):
            outbox.enqueue(conn, topic, {"n": i}, **kw)


def rows(store) -> int:
    return outbox.backlog(store.conn)["rows"]


def test_retained_state_is_coalesced_per_topic(store):
    with store.transaction() as conn:
        for i in range(5):
            outbox.enqueue(conn, "d/state", {"i": i}, retain=True, priority=PRIORITY_STATE)
            outbox.enqueue(conn, "d/inventory/A", {"i": i}, retain=True, priority=PRIORITY_STATE)
            outbox.enqueue(conn, "d/events", {"i": i})
        outbox.enqueue(conn, "d/log", {"i": 0}, retain=True, coalesce=False)
        outbox.enqueue(conn, "d/log", {"i": 1}, retain=True, coalesce=False)
    pending = outbox.pending(store.conn, 100)
    by_topic: dict[str, list] = {}
    for r in pending:
        by_topic.setdefault(r.topic, []).append(json.loads(r.payload)["i"])
    assert by_topic == {"d/state": [4], "d/inventory/A": [4], "d/events": [0, 1, 2, 3, 4], "d/log": [0, 1]}


def test_cap_policy_drops_telemetry_then_state_then_events(store):
    with store.transaction() as conn:
        for i in range(10):
            outbox.enqueue(conn, "d/telemetry", {"i": i}, priority=PRIORITY_TELEMETRY)
            outbox.enqueue(conn, f"d/state/{i}", {"i": i}, retain=True, priority=PRIORITY_STATE)
            outbox.enqueue(conn, "d/events", {"i": i}, priority=PRIORITY_EVENT)
        conn.execute("UPDATE outbox SET created_at = created_at - 7200 WHERE id <= 6")  # 2 telemetry, 2 state, 2 events
    with store.transaction() as conn:
        assert outbox.enforce_caps(conn, max_rows=1000, max_bytes=10**9, max_age_s=3600) == {"telemetry": 2}
    with store.transaction() as conn:  # 28 rows left, cap 15: the 8 telemetry, then 5 of the state rows
        assert outbox.enforce_caps(conn, max_rows=15, max_bytes=10**9, max_age_s=3600) == {"telemetry": 8, "state": 5}
    left = outbox.pending(store.conn, 100)
    assert [r.priority for r in left].count(PRIORITY_EVENT) == 10
    assert [json.loads(r.payload)["i"] for r in left if r.priority == PRIORITY_STATE] == [5, 6, 7, 8, 9]
    size = outbox.backlog(store.conn)["bytes"]
    with store.transaction() as conn:  # byte cap reaches the events last, oldest first
        drops = outbox.enforce_caps(conn, max_rows=1000, max_bytes=size - 1, max_age_s=3600)
    assert drops == {"state": 1}
    with store.transaction() as conn:
        drops = outbox.enforce_caps(conn, max_rows=3, max_bytes=10**9, max_age_s=3600)
    assert drops == {"state": 4, "event": 7}
    assert [json.loads(r.payload)["i"] for r in outbox.pending(store.conn, 100)] == [7, 8, 9]


def test_mark_historical_keeps_the_json_valid():
    assert json.loads(outbox.mark_historical(b'{"a":1}')) == {"historical": True, "a": 1}
    assert outbox.mark_historical(b"{}") == b"{}"
    assert outbox.mark_historical(b"online") == b"online"
    marked = outbox.mark_historical(b'{"a":1}')
    assert outbox.mark_historical(marked) == marked


def test_window_is_bounded_and_rows_are_deleted_only_after_their_puback(store):
    fill(store, 100)
    pub = Recorder()
    d = OutboxDrainer(store, pub, device_id="dev", inflight=8)
    d.step(connected=True)
    assert len(pub.sent) == 8 and d.in_flight == 8
    d.step(connected=True)
    assert len(pub.sent) == 8, "no more than `inflight` unacknowledged messages"
    for mid, *_ in pub.sent[:3]:
        d.on_ack(mid)
    d.step(connected=True)
    assert len(pub.sent) == 11 and d.in_flight == 8
    d.flush_deletes(force=True)
    assert rows(store) == 97  # exactly the three acknowledged rows are gone
    assert pub.ids() == list(range(11))


def test_reconnect_rewinds_without_resending_rows_paho_still_holds(store):
    fill(store, 20)
    pub = Recorder()
    d = OutboxDrainer(store, pub, device_id="dev", inflight=5)
    d.step(connected=True)
    assert pub.ids() == [0, 1, 2, 3, 4]
    d.on_ack(pub.sent[0][0])
    d.step(connected=False)  # link lost: nothing is published, the ack is still applied
    assert len(pub.sent) == 5 and rows(store) == 19
    d.on_reconnect()
    d.step(connected=True)  # 1..4 are still with paho (it re-sends them itself); only one slot is free
    assert pub.ids() == [0, 1, 2, 3, 4, 5]
    assert d.counters["resent"] == 4


def test_retryable_refusal_resends_and_hard_refusal_removes(store):
    fill(store, 3)
    pub = Recorder()
    d = OutboxDrainer(store, pub, device_id="dev", inflight=10)
    d.step(connected=True)
    m0, m1, m2 = (s[0] for s in pub.sent)
    d.on_ack(m0, ok=False, retryable=True)   # e.g. quota exceeded: send again
    d.on_ack(m1, ok=False, retryable=False)  # e.g. not authorised: never going to work
    d.on_ack(m2)
    d.step(connected=True)
    d.flush_deletes(force=True)
    assert pub.ids() == [0, 1, 2, 0] and d.counters["rejected"] == 1
    d.on_ack(pub.sent[-1][0])
    d.step(connected=True)
    d.flush_deletes(force=True)
    assert rows(store) == 0


def test_unpublishable_rows_are_removed_and_a_busy_client_is_retried(store):
    fill(store, 1, topic="bad/+/topic")
    fill(store, 2, start=1)
    pub = Recorder()
    pub.refuse = True
    d = OutboxDrainer(store, pub, device_id="dev", inflight=10)
    d.step(connected=True)
    assert pub.sent == [] and d.counters["rejected"] == 1
    pub.refuse = False
    d.step(connected=True)
    assert pub.ids() == [1, 2]
    d.flush_deletes(force=True)
    assert [r.topic for r in outbox.pending(store.conn, 10)] == ["t/events", "t/events"]


def test_order_is_kept_across_topics_and_batches(store):
    with store.transaction() as conn:
        for i in range(10):
            outbox.enqueue(conn, "d/events/inspection", {"n": i})
            if i % 4 == 3:
                outbox.enqueue(conn, "d/state", {"n": 100 + i}, retain=True, coalesce=False)
    pub = Recorder()
    d = OutboxDrainer(store, pub, device_id="dev", inflight=100, batch_topic="d/events/inspection", batch_events=3)
    d.step(connected=True)
    flat = []
    for _m, topic, payload, _p in pub.sent:
        body = json.loads(payload)
        flat += [e["n"] for e in body["events"]] if "events" in body else [body["n"]]
        if "events" in body:
            assert body["count"] == len(body["events"]) and body["device_id"] == "dev" and 1 <= body["count"] <= 3
    assert flat == [0, 1, 2, 3, 103, 4, 5, 6, 7, 107, 8, 9]


def test_rows_written_long_ago_are_marked_historical(store):
    fill(store, 2)
    store.execute("UPDATE outbox SET created_at = created_at - 600 WHERE id = 1")
    pub = Recorder()
    d = OutboxDrainer(store, pub, device_id="dev", inflight=10, historical_after_s=60)
    d.step(connected=True)
    first, second = (json.loads(s[2]) for s in pub.sent)
    assert first["historical"] is True and "historical" not in second
    assert pub.sent[0][3] == [("historical", "true")] and pub.sent[1][3] is None
    assert d.counters["historical"] == 1


def test_drainer_resumes_after_a_crash_from_the_store_alone(state_dir):
    s = open_store(state_dir)
    fill(s, 10)
    pub = Recorder()
    d = OutboxDrainer(s, pub, device_id="dev", inflight=4)
    d.step(connected=True)
    for mid, *_ in pub.sent[:2]:
        d.on_ack(mid)
    d.step(connected=True)
    d.flush_deletes(force=True)
    s.close()  # the process dies with 4 messages unacknowledged
    s = open_store(state_dir)
    pub2 = Recorder()
    OutboxDrainer(s, pub2, device_id="dev", inflight=100).step(connected=True)
    assert pub2.ids() == list(range(2, 10))  # the unacknowledged ones again (duplicates), nothing lost
    s.close()


@pytest.mark.parametrize("count", [0, 5])
def test_backlog_and_oldest_age(store, count):
    fill(store, count)
    with store.read() as conn:
        assert outbox.backlog(conn)["rows"] == count
        assert (outbox.oldest_age_s(conn) >= 0.0) and (count or outbox.oldest_age_s(conn) == 0.0)
