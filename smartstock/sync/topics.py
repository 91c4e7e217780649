"""The MQTT topic tree (README.md, "MQTT topics and dashboards"), built in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """`smartstock/<site>/<line>/<device_id>/...` (prefix configurable)."""

    prefix: str
    site: str
    line: str
    device_id: str

    @classmethod
    def from_config(cls, mqtt_cfg, device_cfg) -> "Topics":  # MqttConfig, DeviceConfig
        return cls(mqtt_cfg.prefix.strip("/"), device_cfg.site, device_cfg.line, device_cfg.device_id)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}/{self.line}/{self.device_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

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
