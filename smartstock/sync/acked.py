"""A person's tool talking to the broker (ota push, rollouts): wait for the broker's answer, say when it refused.

Under a fleet ACL (README "Running a fleet") an account may log in yet not publish a release. MQTT 5
says so in the PUBACK ("Not authorized"); MQTT 3.1.1 acknowledges the message and drops it, so the
tool would report success. Use these on a paho client created with `protocol=MQTTv5`. The device's
own connection (`client.MqttClient`) handles acknowledgements itself, through the outbox.
"""

from __future__ import annotations

import threading
from typing import Any

from smartstock.errors import BrokerUnavailable

CONNECT_TIMEOUT_S = 10.0
CREDENTIALS_HINT = "check the user name in --url and the password ($SMARTSTOCK_MQTT_PASSWORD or mqtt.password_file)"


def connect_acked(client: Any, host: str, port: int, *, keepalive: int = 30,
                  timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Connect, start paho's network thread and wait for the CONNACK; a refusal (bad password, not
    authorised) raises BrokerUnavailable with the broker's reason. OSError from connect() propagates:
    the caller says how to fix the address."""
    answer: list[Any] = []
    connack = threading.Event()
    client.on_connect = lambda _c, _u, _f, rc, _p: (answer.append(rc), connack.set())
    client.connect(host, port, keepalive=keepalive)
    client.loop_start()
    if not connack.wait(timeout) or answer[0].is_failure:
        client.disconnect()  # no socket left open behind the error
        client.loop_stop()
        why = f"refused the connection: {answer[0]}" if answer else f"did not answer within {timeout:g} s"
        raise BrokerUnavailable(f"the broker at {host}:{port} {why}", hint=CREDENTIALS_HINT)


def publish_acked(client: Any, topic: str, payload: bytes, *, retain: bool = False, timeout: float = 30.0) -> None:
    """Publish at QoS 1 and wait for the PUBACK; raise BrokerUnavailable when none came or the broker
    refused the message (its MQTT 5 reason code, e.g. "Not authorized" from the ACL)."""
    acks: dict[int, Any] = {}
    client.on_publish = lambda _c, _u, mid, rc, _p: acks.__setitem__(mid, rc)
    info = client.publish(topic, payload, qos=1, retain=retain)
    info.wait_for_publish(timeout)
    rc = acks.get(info.mid)
    if not info.is_published() or rc is None:
        raise BrokerUnavailable(f"the broker did not acknowledge {topic} within {timeout:g} s")
    if rc.is_failure:
        raise BrokerUnavailable(f"the broker refused to publish {topic}: {rc}",
                                hint="this user may not write there: releases and commands need a technician "
                                     "account in the broker's ACL (smartstock mqtt acl --technician USER)")
