"""Where envelopes and artifacts are published: per device, or per group for a fleet roll-out.

Device:  {prefix}/{site}/{line}/{device_id}/model/desired        (Topics.model_desired)
Group:   {prefix}/groups/{group}/model/desired
Artifacts live under the same base: {base}/model/artifact/<sha256> (retained).
"""

from __future__ import annotations

from smartstock.config import LEVEL
from smartstock.errors import ConfigError


def check_level(value: str, what: str) -> str:
    """`value` if it is one valid MQTT topic level (config's rule for device ids, sites, lines, groups)."""
    if not LEVEL.match(value):
        raise ConfigError(f"{what} {value!r} is not a valid MQTT topic level",
                          hint="use 1-64 letters, digits, '_' or '-'")
    return value


def device_base(prefix: str, site: str, line: str, device_id: str) -> str:
    return f"{prefix.strip('/')}/{check_level(site, 'site')}/{check_level(line, 'line')}/{check_level(device_id, 'device id')}"


def group_base(prefix: str, group: str) -> str:
    return f"{prefix.strip('/')}/groups/{check_level(group, 'group')}"


def desired(base: str) -> str:
    return f"{base}/model/desired"


def artifact(base: str, sha256: str) -> str:
    return f"{base}/model/artifact/{sha256}"


def state(base: str) -> str:
    return f"{base}/model/state"
