"""Alert rules (pure) and the alerts table: one open alert per key, closed when cleared, published
retained through the outbox by the refresher."""

from __future__ import annotations

import json
import threading

from edge.refresh import Refresher
from smartstock.config import Config
from smartstock.inventory import alerts as rules
from smartstock.store.alerts import close_alert, open_alerts, raise_alert, sync_alerts
from smartstock.store.stock import book
from smartstock.sync.topics import Topics


def test_rules():
    assert rules.low_stock("A", 10, 12.5).kind == "low_stock"
    assert rules.low_stock("A", 12.5, 12.5) is not None          # at the reorder point counts
    assert rules.low_stock("A", 13, 12.5) is None
    assert rules.low_stock("A", 0, None) is None                  # no plan, no alert
    assert rules.low_stock("A", 0, 5).severity == "critical"
    assert rules.defect_rate("A", 10, 100, 0.05, 50).data["rate"] == 0.1
    assert rules.defect_rate("A", 5, 100, 0.05, 50) is None       # equal to the threshold is fine
    assert rules.defect_rate("A", 3, 10, 0.05, 50) is None        # too few parts to judge
    assert rules.camera_down("cam", "reconnecting", 31, 30).key == "camera_down"
    assert rules.camera_down("cam", "reconnecting", 5, 30) is None
    assert len(rules.low_stock_from_plans([{"sku": "A", "on_hand": 1, "reorder_point": 3},
                                          {"sku": "B", "on_hand": 9, "reorder_point": 3}])) == 1


def test_one_open_alert_per_key_and_closing(store):
    a = rules.low_stock("A", 1, 5)
    with store.transaction() as conn:
        assert sync_alerts(conn, [a], [rules.LOW_STOCK]) == (["low_stock:A"], [])
        assert sync_alerts(conn, [rules.low_stock("A", 0, 5)], [rules.LOW_STOCK]) == ([], [])  # refreshed, not duplicated
        raise_alert(conn, rules.Alert("model_rolled_back", "model_rolled_back", "rolled back"))
        assert [x["key"] for x in open_alerts(conn)] == ["low_stock:A", "model_rolled_back"]
        assert open_alerts(conn)[0]["data"]["on_hand"] == 0
        # clearing low stock leaves other kinds alone
        assert sync_alerts(conn, [], [rules.LOW_STOCK]) == ([], ["low_stock:A"])
        assert [x["key"] for x in open_alerts(conn)] == ["model_rolled_back"]
        assert close_alert(conn, "model_rolled_back") and not close_alert(conn, "model_rolled_back")
        # a new episode opens a new row; history keeps the closed one
        sync_alerts(conn, [a], [rules.LOW_STOCK])
    assert store.query_one("SELECT COUNT(*) FROM alerts WHERE key = 'low_stock:A'")[0] == 2


def _refresher(store, config, cameras=()):
    topics = Topics.from_config(config.mqtt, config.device)
    return Refresher(store, config, topics, status=lambda: {"fps": 1.0}, camera=lambda: list(cameras),
                     stop_event=threading.Event()), topics


def test_refresher_raises_and_clears_alerts_and_publishes_retained(store):
    config = Config.model_validate({"inspection": {"sku": "S1"},
                                    "alerts": {"defect_rate_threshold": 0.1, "defect_window": 10},
                                    "inventory": {"skus": {"S1": {"annual_demand": 3650}}}})
    ref, topics = _refresher(store, config)
    plans = ref.refresh_plans()
    plan = next(p for p in plans if p["sku"] == "S1")
    assert plan["reorder_point"] > 0  # 10 a day for a 7-day lead time
    with store.transaction() as conn:
        for i in range(10):  # 10 inspections, 3 defective: rate 30% > 10%
            conn.execute("INSERT INTO inspections(event_id, ts, sku, label, score, is_defect) VALUES (?, 't', 'S1', 'x', 1, ?)",
                         (f"e{i}", int(i < 3)))
    current = ref.check_alerts()
    assert {a["kind"] for a in current} == {"low_stock", "defect_rate"}
    row = store.query_one("SELECT payload, retain FROM outbox WHERE topic = ? ORDER BY id DESC", (topics.alerts,))
    assert row["retain"] == 1 and len(json.loads(bytes(row["payload"]))["alerts"]) == 2
    inv = store.query_one("SELECT payload FROM outbox WHERE topic = ?", (topics.inventory("S1"),))
    assert json.loads(bytes(inv[0]))["reorder_point"] == plan["reorder_point"]
    # stock arrives, good parts follow: both alerts clear and an empty list is published
    with store.transaction() as conn:
        book(conn, "S1", "received", 10_000, ref="po-1")
        for i in range(10, 20):
            conn.execute("INSERT INTO inspections(event_id, ts, sku, label, score, is_defect) VALUES (?, 't', 'S1', 'ok', 1, 0)",
                         (f"e{i}",))
    assert ref.check_alerts() == []
    row = store.query_one("SELECT payload FROM outbox WHERE topic = ? ORDER BY id DESC", (topics.alerts,))
    assert json.loads(bytes(row[0]))["alerts"] == []


def test_camera_down_alert_follows_the_source(store):
    config = Config()
    ref, _ = _refresher(store, config, cameras=[("", "cam0", "down", 120.0)])
    assert [(a["kind"], a["key"]) for a in ref.check_alerts()] == [("camera_down", "camera_down")]
    ref.camera = lambda: [("", "cam0", "ok", 0.1)]
    assert ref.check_alerts() == []


def test_each_camera_has_its_own_camera_down_alert(store):
    ref, _ = _refresher(store, Config(), cameras=[("a", "a (folder x)", "down", 120.0), ("b", "b (rtsp)", "ok", 0.1)])
    (alert,) = ref.check_alerts()
    assert (alert["key"], alert["kind"]) == ("camera_down:a", "camera_down") and "a (folder x)" in alert["message"]
    ref.camera = lambda: [("a", "a", "down", 130.0), ("b", "b", "error", 45.0)]  # b's frames stopped fitting
    assert {a["key"] for a in ref.check_alerts()} == {"camera_down:a", "camera_down:b"}
    ref.camera = lambda: [("a", "a", "ok", 0.2), ("b", "b", "error", 50.0)]   # a is back, b is not
    (alert,) = ref.check_alerts()
    assert alert["key"] == "camera_down:b" and "ROI" in alert["message"]
