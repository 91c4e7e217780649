"""Drive a staged rollout over MQTT: find the group's devices, publish batch by batch, follow model/state.

A batch's devices get the release on their own `{base}/model/desired` (retained, with the artifact on
`{base}/model/artifact/<sha256>`), never on the group topic: every device of a group listens there, so
publishing there before the last batch would install everywhere at once. Only after the last batch is
the release published on `{prefix}/groups/<group>/model/desired` (retained), for the devices that were
offline and the ones that join later. A device's own topics are cleared once it has answered (a retained
artifact per device would hold a model-sized copy per device in the broker).

`say` receives one line per event (the CLI prints it); the state file is saved after every change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartstock.errors import ConfigError
from smartstock.ota import addressing, link
from smartstock.ota.rollout import (
    MAX_DEVICES, DeviceProgress, Rollout, announced_groups, base_of, compact, model_state, parse_topic, save, verdict,
)
from smartstock.store.db import utcnow

logger = logging.getLogger(__name__)


@dataclass
class Seen:
    """What the broker said about one device (retained and live)."""

    site: str
    line: str
    device_id: str
    groups: list[str] | None = None
    online: bool | None = None
    model: dict[str, Any] | None = None  # the latest model/state payload


@dataclass
class Fleet:
    """Devices under a prefix, from their retained `state`, `status` and `model/state`."""

    prefix: str
    devices: dict[str, Seen] = field(default_factory=dict)  # by base

    def take(self, msg: link.Message) -> str | None:
        """Record one message; the device's base, or None when the topic is not a device topic."""
        where = parse_topic(self.prefix, msg.topic)
        if where is None:
            return None
        site, line, dev, leaf = where
        base = f"{self.prefix.strip('/')}/{site}/{line}/{dev}"
        seen = self.devices.get(base)
        if seen is None:
            if len(self.devices) >= MAX_DEVICES:
                return None
            seen = self.devices[base] = Seen(site, line, dev)
        if leaf == "status":
            seen.online = msg.payload == "online" if isinstance(msg.payload, str) else None
        elif leaf == "state":
            seen.groups = announced_groups(msg.payload)
        elif isinstance(msg.payload, dict):
            seen.model = msg.payload
        return base

    def members(self, group: str, site: str | None = None, line: str | None = None) -> dict[str, Seen]:
        return {b: s for b, s in self.devices.items() if s.groups and group in s.groups
                and (site is None or s.site == site) and (line is None or s.line == line)}

    def silent(self) -> int:
        """Devices whose retained state names no groups (older SmartStock): only the group topic reaches them."""
        return sum(1 for s in self.devices.values() if s.groups is None)


def open_feed(client: Any, prefix: str, *, with_state: bool) -> link.Feed:
    """The devices' `status` and `model/state` (and `state`, to find a group's members), cut to what a rollout
    reads as they arrive."""
    return link.Feed(client, filters(prefix, with_state=with_state), compact=compact)


def filters(prefix: str, *, with_state: bool) -> list[str]:
    p = prefix.strip("/")
    return [f"{p}/+/+/+/status", f"{p}/+/+/+/model/state"] + ([f"{p}/+/+/+/state"] if with_state else [])


def discover(feed: link.Feed, prefix: str, timeout: float) -> Fleet:
    fleet = Fleet(prefix)
    for msg in feed.retained(timeout):
        fleet.take(msg)
    return fleet


class Driver:
    """One invocation's work on a rollout: from `ro.current` to the end, or to a pause."""

    def __init__(self, ro: Rollout, path: Path, client: Any, feed: link.Feed, fleet: Fleet, envelope: bytes,
                 artifact: bytes | None, say: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.ro, self.path, self.client, self.feed, self.fleet = ro, path, client, feed, fleet
        self.envelope, self.artifact, self.say, self.clock = envelope, artifact, say, clock
        self.batch_seconds: list[tuple[str, float]] = []  # (label, seconds) of the batches this run finished

    def _note(self, line: str) -> None:
        self.ro.note(line, utcnow())
        self.say(line)

    def _save(self) -> None:
        self.ro.updated_at = utcnow()
        save(self.ro, self.path)

    def run(self) -> str:
        ro = self.ro
        ro.status, ro.reason = "running", ""
        self._save()
        while ro.current < len(ro.batches):
            started = self.clock()
            if not self._batch(ro.current):
                return ro.status
            self.batch_seconds.append((ro.batch_label(ro.current), self.clock() - started))
            ro.current += 1
            self._save()
        self._finish()
        return ro.status

    def _batch(self, i: int) -> bool:
        """Publish to the batch's pending devices and wait for all of them; False when paused."""
        ro = self.ro
        label = ro.batch_label(i)
        todo = [b for b in ro.batches[i] if ro.devices[b].status in ("pending", "published")]
        self._drain(0.0)
        for b in todo:
            d = ro.devices[b]
            seen = self.fleet.devices.get(b)
            if d.status == "pending":
                if self._judge(b, d):
                    if d.status == "failed":
                        return self._pause(f"{d.name}: {d.reason}")
                    continue
                if seen is not None and seen.online is False:
                    d.status, d.reason, d.finished_at = "skipped", "offline: gets the release from the group topic " \
                        "after the last batch", utcnow()
                    self._note(f"{label}: {d.name} is offline, skipped (it gets the release after the last batch)")
                    continue
                st = model_state(seen.model, ro.kind) if seen is not None else None
                d.baseline = st.get("updated_at") if st else None
                link.publish_release(self.client, b, self.envelope, self.artifact, ro.sha256)
                d.status, d.published_at = "published", utcnow()
        waiting = []
        for b in ro.batches[i]:  # resumed: a device may have answered while nobody watched (its retained state)
            d = ro.devices[b]
            if d.status == "published" and self._judge(b, d) and d.status == "failed":
                return self._pause(f"{d.name}: {d.reason}")
            if d.status == "published":
                waiting.append(b)
        self._note(f"{label}: {len(ro.batches[i])} device(s), waiting for {len(waiting)} to commit "
                   f"release {ro.release}")
        self._save()
        deadline = self.clock() + ro.batch_timeout_s
        gone: set[str] = set()
        while waiting:
            left = deadline - self.clock()
            if left <= 0:
                names = ", ".join(ro.devices[b].name for b in waiting[:5]) + (" ..." if len(waiting) > 5 else "")
                return self._pause(f"no final state within {ro.batch_timeout_s:g} s from {len(waiting)} device(s): "
                                   f"{names}")
            msg = self.feed.next(min(left, 1.0))
            if msg is None:
                continue
            b = self.fleet.take(msg)
            if b in waiting and self.fleet.devices[b].online is False and b not in gone:
                gone.add(b)
                self._note(f"{label}: {ro.devices[b].name} went offline; still waiting (it resumes when it is back)")
            if b in waiting and self._judge(b, ro.devices[b]):
                waiting.remove(b)
                d = ro.devices[b]
                if d.status == "failed":
                    return self._pause(f"{d.name}: {d.reason}")
        self._note(f"{label}: done ({sum(ro.devices[b].status == 'committed' for b in ro.batches[i])} committed)")
        return True

    def _drain(self, timeout: float) -> None:
        while (msg := self.feed.next(timeout)) is not None:
            self.fleet.take(msg)
            timeout = 0.0

    def _judge(self, b: str, d: DeviceProgress) -> bool:
        """Apply the device's latest model/state; True once it is final (committed or failed)."""
        seen = self.fleet.devices.get(b)
        if seen is None:
            return False
        published = d.status == "published"
        # before publishing, only an answer naming this very artifact counts (an old refusal is not one)
        st = model_state(seen.model, self.ro.kind) or {}
        got = verdict(seen.model, self.ro.kind, self.ro.sha256, d.baseline if published else st.get("updated_at"))
        if got is None:
            return False
        d.status, d.reason, d.finished_at = got[0], got[1], utcnow()
        if published:  # its copy is no longer needed: the group topic carries the release from the end on
            link.withdraw_release(self.client, b, self.ro.sha256)
        self._note(f"{self.ro.batch_label(d.batch)}: {d.name} {got[0]}" + (f" ({got[1]})" if got[0] == "failed" else
                   "" if published else " (it already had this release)"))
        self._save()
        return True

    def _pause(self, reason: str) -> bool:
        self.ro.status, self.ro.reason = "paused", reason
        self._note(f"paused: {reason}")
        self._save()
        return False

    def _finish(self) -> None:
        ro = self.ro
        group = addressing.group_base(ro.prefix, ro.group)
        link.publish_release(self.client, group, self.envelope, self.artifact, ro.sha256)
        ro.group_published, ro.status = True, "completed"
        c = ro.counts()
        self._note(f"completed: {c['committed']} committed, {c['failed']} failed, {c['skipped']} skipped; release "
                   f"{ro.release} is retained on {addressing.desired(group)} for devices that come online later")
        self._save()

    def interrupted(self) -> None:
        self.ro.status, self.ro.reason = "interrupted", "stopped by the operator (Ctrl-C / SIGTERM)"
        self._note("interrupted: resume with `smartstock ota rollout resume --group " + self.ro.group + "`")
        self._save()


def new_rollout(fleet: Fleet, *, group: str, site: str | None, line: str | None, release: Any, envelope_path: Path,
                envelope_sha256: str, artifact_path: Path | None, canary: int, batch: str,
                batch_timeout_s: float) -> Rollout:
    """The plan for the group's devices found on the broker; ConfigError when there are none."""
    from smartstock.ota.rollout import plan

    members = fleet.members(group, site, line)
    if not members:
        raise ConfigError(f"no device of group {group!r} found on the broker under {fleet.prefix}/"
                          + (f" (site {site})" if site else "") + (f" (line {line})" if line else "")
                          + f"; {len(fleet.devices)} device(s) seen, {fleet.silent()} name no groups",
                          hint="check --group, --prefix and the devices' device.groups; devices announce their groups "
                               "in their retained state (SmartStock that predates this needs an update first, or "
                               "`ota push --group`)")
    devices = [DeviceProgress(device_id=s.device_id, site=s.site, line=s.line, batch=0) for s in members.values()]
    batches = plan(devices, canary, batch)
    now = utcnow()
    prefix = fleet.prefix.strip("/")
    by_base: dict[str, DeviceProgress] = {}
    for i, ds in enumerate(batches):
        for d in ds:
            d.batch = i
            by_base[base_of(prefix, d)] = d
    return Rollout(group=group, prefix=prefix, kind=release.kind, model_id=release.model_id, release=release.release,
                   sha256=release.artifact.sha256, envelope=str(envelope_path.resolve()),
                   envelope_sha256=envelope_sha256,
                   artifact=str(artifact_path.resolve()) if artifact_path else None, canary=min(canary, len(devices)),
                   batch=batch, batch_timeout_s=batch_timeout_s,
                   batches=[[base_of(prefix, d) for d in ds] for ds in batches], devices=by_base,
                   started_at=now, updated_at=now)


def abort(ro: Rollout, client: Any, fleet: Fleet) -> list[str]:
    """Withdraw the release from every device it was published to that has not answered; those that
    committed keep it (an abort does not roll back, as in Mender). The names of the withdrawn devices.
    `fleet` holds the retained model states: a device that answered while nobody watched is recorded so."""
    out = []
    for b, d in ro.devices.items():
        if d.status == "published":
            seen = fleet.devices.get(b)
            got = verdict(seen.model, ro.kind, ro.sha256, d.baseline) if seen is not None else None
            link.withdraw_release(client, b, ro.sha256)
            if got is not None:
                d.status, d.reason, d.finished_at = got[0], got[1], utcnow()
                continue
            d.status, d.reason, d.finished_at = "skipped", "withdrawn by abort", utcnow()
            out.append(d.name)
        elif d.status == "pending":
            d.status, d.reason = "skipped", "not reached before the abort"
    ro.status, ro.reason = "aborted", "aborted by the operator"
    ro.note(f"aborted: release withdrawn from {len(out)} device(s) that had not answered", utcnow())
    return out
