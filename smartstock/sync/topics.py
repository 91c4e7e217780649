"""The MQTT topic tree (README.md, "MQTT topics and dashboards"), built in one place."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from smartstock.config import LEVEL

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topics:
    """`smartstock/<site>/<line>/<device_id>/...` (prefix configurable)."""

    prefix: str
    site: str
    line: str
    device_id: str
    reply_prefix: str = ""  # where else an MQTT 5 response topic may point (mqtt.reply_prefix)

    @classmethod
    def from_config(cls, mqtt_cfg, device_cfg) -> "Topics":  # MqttConfig, DeviceConfig
        return cls(mqtt_cfg.prefix.strip("/"), device_cfg.site, device_cfg.line, device_cfg.device_id,
                   (mqtt_cfg.reply_prefix or "").strip("/"))

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}/{self.line}/{self.device_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    def camera_state(self, camera_id: str) -> str:
        """One camera's figures (retained); camera ids are one topic level (config.CAMERA_ID_PATTERN)."""
        return f"{self.base}/camera/{camera_id}/state"

    def inventory(self, sku: str) -> str:
        return f"{self.base}/inventory/{sku}"

    @property
    def inspection_events(self) -> str:
        return f"{self.base}/events/inspection"

    @property
    def alerts(self) -> str:
        return f"{self.base}/alerts"

    @property
    def model_state(self) -> str:
        return f"{self.base}/model/state"

    @property
    def model_desired(self) -> str:
        return f"{self.base}/model/desired"

    def model_artifact(self, sha256: str) -> str:
        return f"{self.base}/model/artifact/{sha256}"

    def cmd(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    def response(self, name: str) -> str:
        return f"{self.base}/response/{name}"

    def reply_topic(self, requested: str | None, name: str) -> str:
        """Where to answer: the sender's MQTT 5 response topic only when it lies under this device's
        `{base}/response/` or the configured reply prefix; anything else (another device's `cmd/`,
        `homeassistant/.../config`, a wildcard) gets the default `{base}/response/<name>`."""
        if not requested:
            return self.response(name)
        allowed = [f"{self.base}/response/"] + ([f"{self.reply_prefix}/"] if self.reply_prefix else [])
        if (any(requested.startswith(p) for p in allowed) and not any(c in requested for c in "+#\0")
                and len(requested.encode()) <= 1024):
            return requested
        logger.warning("mqtt: response topic %r is outside %s; answering on %s", requested[:200],
                       " or ".join(allowed), self.response(name))
        return self.response(name)

    @property
    def cmd_filter(self) -> str:
        """Subscription filter for every command."""
        return f"{self.base}/cmd/+"

    def cmd_name(self, topic: str) -> str | None:
        """The command name of a `{base}/cmd/<name>` topic, None for any other topic."""
        head = f"{self.base}/cmd/"
        return topic[len(head):] if topic.startswith(head) and "/" not in topic[len(head):] else None

    @property
    def sales_in(self) -> str:
        return f"{self.base}/sales/in"

    @property
    def sync_stats(self) -> str:
        """Live counters of the sync path itself (published directly, not via the outbox)."""
        return f"{self.base}/sync"


def split_device_topic(prefix: str, topic: str) -> tuple[str, str, str, str] | None:
    """(site, line, device_id, suffix) of a `{prefix}/<site>/<line>/<device_id>/<suffix...>` topic as
    `Topics` builds it, each level valid; None for anything else (group topics included). Tools that
    read many devices' topics (fleet status, OTA rollouts) use it on hostile input."""
    head = prefix.strip("/") + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head):].split("/")
    if len(parts) < 4 or parts[0] == "groups" or not all(LEVEL.match(p) for p in parts[:3]):
        return None
    return parts[0], parts[1], parts[2], "/".join(parts[3:])
