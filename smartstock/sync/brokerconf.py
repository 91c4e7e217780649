"""mosquitto files for a fleet: an ACL where each device writes only under its own base topic, and
the bridge that carries a site broker's topics up to the plant broker and releases down.

mosquitto has no roles, so the file is built from role lists: devices (user name = device id, or the
CN of its client certificate with `use_identity_as_username`), technicians (commands, OTA releases,
sales), Home Assistant (reads, and only the harmless buttons), dashboards (read only), sales feeders
(an ERP writing `sales/in`) and site bridges (on the plant broker, one site each).

Device rights are `pattern` lines on `%u` built from the real topic tree (`Topics`), so the ACL
follows the topics the device publishes. What a pattern cannot say goes in one `user` block per
device: the Home Assistant discovery topics (the node id `smartstock_<id>` is not a whole topic level,
and mosquitto substitutes `%u` only for a whole level), the group releases and `homeassistant/status`
(topics without `%u`: as patterns they would apply to every account, and mosquitto warns about them)
and, with `mqtt.reply_prefix`, the shared reply topics. So every device must be listed. `deploy/mosquitto/acl.conf`
is this module's output for example names (tests/test_fleet_access.py keeps them equal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from smartstock.config import LEVEL
from smartstock.errors import ConfigError
from smartstock.sync.discovery import node_id
from smartstock.sync.topics import Topics

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
HA_BUTTONS = ("sync-now", "rebirth")  # the only commands Home Assistant's discovery buttons send


@dataclass(frozen=True)
class Fleet:
    """Who connects to the broker, by role. `bridges` maps a bridge's user name to its site."""

    prefix: str = "smartstock"
    ha_prefix: str = "homeassistant"
    reply_prefix: str | None = None
    devices: tuple[str, ...] = ()
    technicians: tuple[str, ...] = ()
    homeassistant: tuple[str, ...] = ()
    dashboards: tuple[str, ...] = ()
    sales: tuple[str, ...] = ()
    bridges: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        """Fail fast on names mosquitto or the patterns cannot use; a person's user name that is also a
        device id would get that device's rights through the patterns."""
        problems: list[str] = []
        for d in self.devices:
            if not LEVEL.match(d):
                problems.append(f"device {d!r}: 1-64 letters, digits, '-' or '_' (a device id)")
        people = {"technician": self.technicians, "homeassistant": self.homeassistant,
                  "dashboard": self.dashboards, "sales": self.sales, "bridge": tuple(self.bridges)}
        seen: dict[str, str] = {d: "device" for d in self.devices}
        for role, names in people.items():
            for n in names:
                if not _NAME.match(n):
                    problems.append(f"{role} {n!r}: 1-64 letters, digits, '.', '@', '-' or '_'")
                elif n in seen:
                    problems.append(f"{role} {n!r} is also a {seen[n]}: give every account one role "
                                    "(device patterns apply to every user name)")
                seen.setdefault(n, role)
        for user, site in self.bridges.items():
            if not LEVEL.match(site):
                problems.append(f"bridge {user!r}: site {site!r} is not a topic level")
        if problems:
            raise ConfigError("cannot build the ACL: " + "; ".join(problems),
                              hint="fix the names (smartstock mqtt acl --help)")


def device_topics(fleet: Fleet, device: str = "%u", site: str = "+", line: str = "+") -> tuple[list[str], list[str]]:
    """(write, read) topics under a device's own base; with the defaults, mosquitto patterns for every device."""
    t = Topics(fleet.prefix.strip("/"), site, line, device, fleet.reply_prefix or "")
    write = [t.status, t.state, t.camera_state("+"), t.alerts, t.sync_stats, t.model_state, f"{t.base}/events/+",
             t.inventory("+"), t.response("+")]
    read = [t.cmd_filter, t.sales_in, t.model_desired, t.model_artifact("+")]
    return write, read


def group_topics(fleet: Fleet) -> list[str]:
    """Releases for device groups, read by every device (a device refuses a release not signed for it)."""
    groups = f"{fleet.prefix.strip('/')}/groups/+"  # smartstock.ota.addressing.group_base (ota sits above sync)
    return [f"{groups}/model/desired", f"{groups}/model/artifact/+"]


def up_topics(fleet: Fleet, site: str = "+") -> list[str]:
    """What a site sends to the plant: everything a device writes (its own base, responses included)."""
    return device_topics(fleet, "+", site)[0]


def down_topics(fleet: Fleet, site: str = "+") -> list[str]:
    """What a plant sends to a site: commands, sales and OTA releases (device and group)."""
    return device_topics(fleet, "+", site)[1] + group_topics(fleet)


def acl_text(fleet: Fleet) -> str:
    """The whole ACL file (mosquitto `acl_file`)."""
    fleet.check()
    p, ha = fleet.prefix.strip("/"), fleet.ha_prefix
    write, read = device_topics(fleet)
    out = ["# SmartStock mosquitto ACL, written by `smartstock mqtt acl` (README \"Running a fleet\").",
           "# No lines before the first `user`: anonymous clients get nothing.", "",
           "# -- every device (user name = device id, or client certificate CN with use_identity_as_username)",
           "# A device writes only under its own base topic and reads its commands, sales and releases."]
    out += [f"pattern write {w}" for w in write] + [f"pattern read {r}" for r in read]
    ops = [f"{p}/+/+/+/cmd/+", f"{p}/+/+/+/model/desired", f"{p}/+/+/+/model/artifact/+",
           f"{p}/groups/+/model/desired", f"{p}/groups/+/model/artifact/+", f"{p}/+/+/+/sales/in"]

    def block(title: str, users: tuple[str, ...], lines: list[str]) -> None:
        out.extend(["", f"# -- {title}"])
        for u in users:
            out.append(f"user {u}")
            out.extend(lines)

    # what no pattern can say (mosquitto also warns about a pattern without %u or %c): one block per device
    shared = [f"topic read {t}" for t in group_topics(fleet)] + [f"topic read {ha}/status"]
    shared += [f"topic write {fleet.reply_prefix.strip('/')}/#"] if fleet.reply_prefix else []
    for d in fleet.devices:
        out.extend(["", f"# device {d}: its Home Assistant discovery configs, group releases, HA's status"
                    + (", MQTT 5 replies" if fleet.reply_prefix else ""),
                    f"user {d}", f"topic write {ha}/+/{node_id(d)}/+/config", *shared])
    block("technicians: read everything, send commands, sales and OTA releases, clear stale discovery",
          fleet.technicians, [f"topic read {p}/#"] + [f"topic write {t}" for t in ops] + [f"topic readwrite {ha}/#"]
          + ([f"topic readwrite {fleet.reply_prefix.strip('/')}/#"] if fleet.reply_prefix else []))
    block("Home Assistant: reads, announces itself, presses the sync-now / rebirth buttons only",
          fleet.homeassistant, [f"topic read {p}/#", f"topic read {ha}/#", f"topic write {ha}/status"]
          + [f"topic write {p}/+/+/+/cmd/{b}" for b in HA_BUTTONS])
    block("dashboards: read only", fleet.dashboards, [f"topic read {p}/#", f"topic read {ha}/#"])
    block("sales feeders (ERP): book sales, read the answers", fleet.sales,
          [f"topic write {p}/+/+/+/sales/in", f"topic read {p}/+/+/+/response/sales"])
    for user, site in fleet.bridges.items():
        out.extend(["", f"# -- bridge of site {site} (plant broker side): its devices' topics up, releases down",
                    f"user {user}"])
        out += [f"topic write {t}" for t in up_topics(fleet, site)] + [f"topic write {ha}/+/+/+/config"]
        out += [f"topic read {t}" for t in down_topics(fleet, site)] + [f"topic read {ha}/status"]
        out.append("topic readwrite $SYS/broker/connection/+/state")
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Bridge:
    """A site broker's bridge to the plant broker (the site broker's side of it)."""

    site: str
    address: str = "plant-broker.example:8883"
    remote_user: str | None = None      # the plant's `user` for this bridge (None: client certificate)
    remote_password: str = "CHANGE-ME"  # written into the file: keep it 0640 root:mosquitto
    cafile: str | None = "/etc/mosquitto/certs/plant-ca.crt"  # None: plaintext (a lab, a loopback test)
    certfile: str | None = None         # client certificate of the bridge (CN = remote_user on the plant)
    keyfile: str | None = None
    persistence_dir: str = "/var/lib/mosquitto/"
    max_queued: int = 1_000_000          # per side of the bridge; see the sizing note in the file
    restart_s: tuple[int, int] = (2, 30)  # reconnect backoff base, cap


def bridge_text(fleet: Fleet, b: Bridge) -> str:
    """mosquitto config for the site broker: persistence, queue sizes and the bridge up to the plant."""
    if not LEVEL.match(b.site):
        raise ConfigError(f"site {b.site!r} is not a topic level", hint="1-64 letters, digits, '-' or '_'")
    ha = fleet.ha_prefix
    out = [f"# SmartStock bridge: site {b.site} -> plant, written by `smartstock mqtt bridge` (README \"Running a fleet\").",
           "# Include it in the SITE broker's mosquitto.conf (or drop it in /etc/mosquitto/conf.d/), mode 0640",
           "# root:mosquitto: it may hold the bridge password. Do not repeat the options below in the main file.",
           "",
           "# Queue on disk while the plant is out of reach. mosquitto writes its database every autosave_interval",
           "# seconds and on a clean stop, so a power cut of the site broker loses at most that window.",
           "persistence true", f"persistence_location {b.persistence_dir}", "autosave_interval 10",
           "# Messages held for the bridge while the link is down (default 1000 would drop the rest):",
           "# devices x events/s x longest cut, e.g. 20 devices x 5/s x 2.5 h = 900,000. RAM: ~1 KB each.",
           f"max_queued_messages {b.max_queued}", "",
           f"connection smartstock-{b.site}", f"address {b.address}",
           f"remote_clientid smartstock-bridge-{b.site}", f"local_clientid smartstock-bridge-{b.site}.local",
           "# Persistent sessions on both sides: what is published during a cut waits for the link.",
           "cleansession false", "local_cleansession false", "bridge_protocol_version mqttv311",
           "try_private true", "notifications true", f"restart_timeout {b.restart_s[0]} {b.restart_s[1]}",
           "keepalive_interval 30"]
    if b.remote_user:
        out.append(f"remote_username {b.remote_user}")
        if b.certfile is None:
            out.append(f"remote_password {b.remote_password}")
    if b.cafile:
        out.append(f"bridge_cafile {b.cafile}")
    if b.certfile and b.keyfile:
        out += [f"bridge_certfile {b.certfile}", f"bridge_keyfile {b.keyfile}"]
    out += ["", "# up: what this site's devices publish (QoS 1)"]
    out += [f"topic {t} out 1" for t in up_topics(fleet, b.site)] + [f"topic {ha}/+/+/+/config out 1"]
    out += ["# down: commands, sales and OTA releases for this site's devices and for every group"]
    out += [f"topic {t} in 1" for t in down_topics(fleet, b.site)] + [f"topic {ha}/status in 1"]
    return "\n".join(out) + "\n"
