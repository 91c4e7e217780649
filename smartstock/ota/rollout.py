"""A staged (phased) rollout of one release to one device group: the plan, its saved state, the verdicts.

Modelled on Mender's phased deployments: a few canary devices first, then batches of the group, each
batch waiting until every one of its devices has committed the release. Any device that refuses or
rolls it back pauses the rollout, naming the device and its reason; `resume` goes on (the failed device
stays failed), `abort` withdraws the release from devices that have not installed it.

Everything here is pure (no MQTT, no clock reads except `utcnow` stamps): `rollout_run.py` drives it.
The state is one JSON file, `rollout-<group>.json`, written atomically after every change, so
`ota rollout status|resume|abort` work from another invocation, or after a crash.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smartstock.errors import ConfigError, first_problem
from smartstock.config import LEVEL
from smartstock.ota.addressing import check_level, device_base
from smartstock.sync.topics import split_device_topic

STATE_VERSION = 1
MAX_DEVICES = 10_000  # a plant has hundreds; more than this on one prefix is junk on the broker
MAX_GROUPS = 64       # per device, in its retained state
FINAL_FAILURES = {"refused", "rolled_back"}
DEVICE_FAILURES = {"disabled", "unavailable"}  # the device cannot take any update of the kind at all

DeviceStatus = Literal["pending", "published", "committed", "failed", "skipped"]
RolloutStatus = Literal["running", "paused", "interrupted", "completed", "aborted"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceProgress(_Strict):
    device_id: str
    site: str
    line: str
    batch: int = Field(ge=0, description="0 = the canaries when --canary > 0")
    status: DeviceStatus = "pending"
    reason: str = ""
    baseline: str | None = Field(None, description="updated_at of its model state when the release was published")
    published_at: str | None = None
    finished_at: str | None = None

    @property
    def name(self) -> str:
        return f"{self.site}/{self.line}/{self.device_id}"


class Rollout(_Strict):
    v: Literal[1] = STATE_VERSION
    group: str
    prefix: str
    kind: str
    model_id: str
    release: int
    sha256: str = Field(description="the artifact's sha256")
    envelope: str = Field(description="path of the envelope file")
    envelope_sha256: str
    artifact: str | None = Field(None, description="path of the model file published on MQTT (None: https URL)")
    canary: int = Field(ge=0)
    batch: str
    batch_timeout_s: float = Field(gt=0)
    batches: list[list[str]] = Field(description="device bases, batch by batch")
    devices: dict[str, DeviceProgress] = Field(description="by device base")
    current: int = Field(0, ge=0, description="the batch being rolled out (== len(batches) once all are done)")
    status: RolloutStatus = "running"
    reason: str = ""
    group_published: bool = False
    started_at: str
    updated_at: str
    log: list[str] = Field(default_factory=list, description="what happened, newest last (bounded)")

    def note(self, line: str, now: str) -> None:
        self.log = (self.log + [f"{now} {line}"])[-200:]
        self.updated_at = now

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("pending", "published", "committed", "failed", "skipped")}
        for d in self.devices.values():
            out[d.status] += 1
        return out

    def batch_label(self, i: int) -> str:
        if self.canary and i == 0:
            return "canary"
        return f"batch {i if self.canary else i + 1}/{len(self.batches) - (1 if self.canary else 0)}"


def state_path(state_dir: Path, group: str) -> Path:
    check_level(group, "group")
    return Path(state_dir) / f"rollout-{group}.json"


def load(path: Path) -> Rollout:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no rollout state at {path}",
                          hint="start one with `smartstock ota rollout ENVELOPE --group G`, or pass the --state-dir "
                               "it was started with") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the rollout state: {e.strerror}") from None
    try:
        return Rollout.model_validate_json(text)
    except ValidationError as e:
        where, first = first_problem(e)
        raise ConfigError(f"{path}: rollout state field {where}: {first['msg']}",
                          hint="the file was edited or written by another version; abort by hand: clear the "
                               "devices' retained model/desired topics and delete the file") from None


def save(ro: Rollout, path: Path) -> None:
    """Atomically (temp file, fsync, rename): a crash leaves the old state or the new one, never half of one."""
    from smartstock.ota.slots import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, ro.model_dump_json(indent=2).encode("utf-8") + b"\n")
    except OSError as e:
        raise ConfigError(f"{path}: cannot write the rollout state: {e.strerror}",
                          hint="pick a writable --state-dir") from None


# -- the plan -----------------------------------------------------------------------------------
def parse_batch(text: str) -> tuple[str, float]:
    """'25%' -> ('percent', 25.0); '10' -> ('count', 10)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%?)\s*", text)
    value = float(m.group(1)) if m else 0.0
    if not m or value <= 0 or (m.group(2) and value > 100) or (not m.group(2) and value != int(value)):
        raise ConfigError(f"--batch {text!r}: not a percentage (1-100%) or a device count",
                          hint="e.g. --batch 25% (a quarter of the group per batch) or --batch 10")
    return ("percent", value) if m.group(2) else ("count", value)


def plan(devices: list[DeviceProgress], canary: int, batch: str) -> list[list[DeviceProgress]]:
    """Canaries (the first `canary` devices in site/line/id order), then batches of the rest. A percentage is
    of the whole group, as in Mender's phases: 25% of 200 devices is batches of 50."""
    mode, value = parse_batch(batch)
    ordered = sorted(devices, key=lambda d: (d.site, d.line, d.device_id))
    canary = min(canary, len(ordered))
    size = max(1, math.ceil(len(ordered) * value / 100) if mode == "percent" else int(value))
    rest = ordered[canary:]
    out = [ordered[:canary]] if canary else []
    out += [rest[i:i + size] for i in range(0, len(rest), size)]
    return out


def base_of(prefix: str, d: DeviceProgress) -> str:
    return device_base(prefix, d.site, d.line, d.device_id)


# -- what the broker says -----------------------------------------------------------------------
def parse_topic(prefix: str, topic: str) -> tuple[str, str, str, str] | None:
    """(site, line, device_id, leaf) of `{prefix}/site/line/device/{state|status|model/state}`, else None."""
    where = split_device_topic(prefix, topic)
    return where if where is not None and where[3] in ("state", "status", "model/state") else None


def announced_groups(payload: Any) -> list[str] | None:
    """The groups a device's retained `state` names (None: it names none; older devices do not)."""
    if not isinstance(payload, dict):
        return None
    groups = payload.get("groups")
    if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
        return None
    return [g for g in groups if isinstance(g, str) and LEVEL.match(g)]


def model_state(payload: Any, kind: str) -> dict[str, Any] | None:
    """One kind's entry of a retained `model/state` (the `models` map every step carries)."""
    models = payload.get("models") if isinstance(payload, dict) else None
    st = models.get(kind) if isinstance(models, dict) else None
    return st if isinstance(st, dict) else None


_MODEL_KEYS = ("status", "error", "detail", "installed_sha256", "installed_version", "step_sha256", "updated_at")


def compact(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What a rollout keeps of a device's message (link.Feed's `compact`): its groups from `state`, the
    fields `verdict` reads from `model/state` (scalars, text capped); a few hundred bytes per device."""
    if topic.endswith("/model/state"):
        models = payload.get("models")
        kept: dict[str, Any] = {}
        for kind, st in (list(models.items())[:4] if isinstance(models, dict) else []):
            if isinstance(st, dict):
                kept[str(kind)[:40]] = {k: (st[k][:400] if isinstance(st[k], str) else st[k]) for k in _MODEL_KEYS
                                        if k in st and (st[k] is None or isinstance(st[k], (str, int, float, bool)))}
        return {"models": kept}
    if topic.endswith("/state"):
        return {"groups": announced_groups(payload)}
    return payload


def verdict(payload: Any, kind: str, sha256: str, baseline: str | None) -> tuple[str, str] | None:
    """('committed', detail) once `sha256` serves; ('failed', reason) when the device refused or rolled back
    this release (or cannot update this kind at all); None while it is still working or says nothing new.

    Devices name the artifact each step was about (`step_sha256`); for one that predates that field, a
    refusal counts when its model state changed after the release was published (`baseline`)."""
    st = model_state(payload, kind)
    if st is None:
        return None
    status = st.get("status")
    if st.get("installed_sha256") == sha256:
        return "committed", f"release {str(st.get('installed_version'))[:20]} {str(status)[:20]}"
    reason = (str(status)[:20] + (f" ({str(st['error'])[:40]})" if st.get("error") else "")
              + (f": {str(st['detail'])[:300]}" if st.get("detail") else ""))
    if status in DEVICE_FAILURES:
        return "failed", reason
    if status in FINAL_FAILURES:
        mine = st.get("step_sha256") == sha256 if "step_sha256" in st else st.get("updated_at") != baseline
        if mine:
            return "failed", reason
    return None
