"""Where envelopes and artifacts are published: per device, or per group for a fleet roll-out.

Device:  {prefix}/{site}/{line}/{device_id}/model/desired        (Topics.model_desired)
Group:   {prefix}/groups/{group}/model/desired
Artifacts live under the same base: {base}/model/artifact/<sha256> (retained).
"""

from __future__ import annotations

import re

from smartstock.errors import ConfigError

_LEVEL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _check(value: str, what: str) -> str:
    if not _LEVEL.match(value):
        raise ConfigError(f"{what} {value!r} is not a valid MQTT topic level",
                          hint="use 1-64 letters, digits, '_' or '-'")
    return value


def device_base(prefix: str, site: str, line: str, device_id: str) -> str:
    return f"{prefix.strip('/')}/{_check(site, 'site')}/{_check(line, 'line')}/{_check(device_id, 'device id')}"


def group_base(prefix: str, group: str) -> str:
    return f"{prefix.strip('/')}/groups/{_check(group, 'group')}"


def desired(base: str) -> str:
    return f"{base}/model/desired"


def artifact(base: str, sha256: str) -> str:
    return f"{base}/model/artifact/{sha256}"


def state(base: str) -> str:
    return f"{base}/model/state"
