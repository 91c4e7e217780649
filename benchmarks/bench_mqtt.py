"""Outbox drain rate to a local mosquitto vs a bare paho QoS 1 publish loop, side by side in one run.

Both publish the same inspection-event payloads with the same in-flight window (32 unacknowledged
on the wire, up to 4 x 32 handed to paho) to the same broker. The bare loop keeps nothing on disk;
the outbox path reads rows from SQLite, publishes, and deletes each row only after its PUBACK (many
per transaction). Target: outbox >= 0.5 x bare.
Rounds alternate the order; the median of the rounds is reported.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

N = 20_000
ROUNDS = 3
INFLIGHT = 32


def _payload(i: int) -> dict:
    from smartstock.sync.payloads import event

    return event("bench-dev", event_id=f"bench-{i:07d}", sku="PCB-100", label="ok", score=0.9731, is_defect=False,
                 latency_ms=4.21, model_id="defect-cnn", model_release=3, frame_id=i, snapshot=None)


def bare_paho(port: int, bodies: list[bytes], topic: str) -> float:
    """paho alone: at most INFLIGHT on the wire, the loop hands paho at most HANDOVER_FACTOR x that
    (the same bounds the sync service uses); nothing is stored or deleted."""
    import paho.mqtt.client as mqtt

    from edge.sync_worker import HANDOVER_FACTOR

    done = threading.Event()
    acked = [0]
    window = threading.BoundedSemaphore(INFLIGHT * HANDOVER_FACTOR)

    def on_publish(_c, _u, _mid, _rc, _p) -> None:
        acked[0] += 1
        window.release()
        if acked[0] == len(bodies):
            done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(INFLIGHT)
    c.max_queued_messages_set(0)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    for b in bodies:
        window.acquire()
        c.publish(topic, b, qos=1)
    done.wait(120)
    dt = time.perf_counter() - t0
    c.loop_stop()
    c.disconnect()
    return len(bodies) / dt


def outbox_drain(port: int, bodies: list[bytes], topic: str, batch_events: int = 1) -> tuple[float, float]:
    """(drain msgs/s, enqueue rows/s) through the real SyncService."""
    from edge.sync_worker import SyncService
    from smartstock.config import Config
    from smartstock.store import open_store
    from smartstock.sync import outbox

    with tempfile.TemporaryDirectory() as d:
        store = open_store(Path(d))
        cfg = Config.model_validate({"device": {"device_id": "bench-dev"},
                                     "mqtt": {"enabled": True, "host": "127.0.0.1", "port": port,
                                              "inflight": INFLIGHT, "batch_events": batch_events,
                                              "ha_discovery": False}})
        svc = SyncService(cfg.mqtt, cfg.device, store, client_id=f"bench-outbox-{batch_events}")
        svc.start()
        svc.client.wait_connected(10)
        t0 = time.perf_counter()
        with store.transaction() as conn:
            for b in bodies:
                outbox.enqueue(conn, topic, b)
        t_enq = time.perf_counter() - t0
        t0 = time.perf_counter()
        svc.wake()
        while svc.drainer.counters["acked"] < len(bodies):  # acked = deleted after PUBACK
            time.sleep(0.005)
        dt = time.perf_counter() - t0
        with store.read() as conn:
            assert outbox.backlog(conn)["rows"] == 0
        svc.stop()
        store.close()
        return len(bodies) / dt, len(bodies) / t_enq


def main() -> dict:
    from smartstock.sync.payloads import dumps
    from tests.fixtures.broker import Broker

    topic = "smartstock/plant/line1/bench-dev/events/inspection"
    bodies = [dumps(_payload(i)) for i in range(N)]
    with tempfile.TemporaryDirectory() as d:
        broker = Broker(Path(d) / "broker").start()
        try:
            bare, drain, enq, batched = [], [], [], []
            for r in range(ROUNDS):
                order = ("bare", "outbox") if r % 2 == 0 else ("outbox", "bare")
                for which in order:
                    if which == "bare":
                        bare.append(bare_paho(broker.port, bodies, topic))
                    else:
                        rate, e = outbox_drain(broker.port, bodies, topic)
                        drain.append(rate)
                        enq.append(e)
                batched.append(outbox_drain(broker.port, bodies, topic, batch_events=10)[0])
        finally:
            broker.stop()
    res = {
        "messages": N, "payload_bytes": len(bodies[0]), "inflight": INFLIGHT, "rounds": ROUNDS,
        "bare_paho_msgs_per_s": statistics.median(bare), "outbox_drain_msgs_per_s": statistics.median(drain),
        "outbox_over_bare": statistics.median(drain) / statistics.median(bare),
        "outbox_enqueue_rows_per_s": statistics.median(enq),
        "outbox_batched10_events_per_s": statistics.median(batched),
        "all_rounds": {"bare": bare, "outbox": drain, "batched10": batched},
        "target": "outbox_over_bare >= 0.5",
    }
    print(f"bare paho QoS1 (inflight {INFLIGHT}): {res['bare_paho_msgs_per_s']:.0f} msg/s; "
          f"outbox drain: {res['outbox_drain_msgs_per_s']:.0f} msg/s "
          f"(ratio {res['outbox_over_bare']:.2f}, target >= 0.5); "
          f"batched x10: {res['outbox_batched10_events_per_s']:.0f} events/s; "
          f"enqueue: {res['outbox_enqueue_rows_per_s']:.0f} rows/s")
    return res


if __name__ == "__main__":
    main()
