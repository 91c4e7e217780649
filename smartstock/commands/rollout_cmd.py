"""`smartstock ota rollout ENVELOPE --group G` and `ota rollout status|resume|abort --group G`.

The staged rollout itself lives in smartstock.ota.rollout (plan, state file, verdicts) and
smartstock.ota.rollout_run (the MQTT side); this module parses options and prints progress.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from smartstock.commands._broker import add_broker_options, broker_conn
from smartstock.commands._common import print_json
from smartstock.errors import ConfigError, InputError, OtaRejected

INTERRUPTED = 130


def add_parser(osub: argparse._SubParsersAction) -> None:
    ro = osub.add_parser(
        "rollout", help="staged rollout to a group: canaries, then batches, pausing on the first failure",
        description="`ota rollout ENVELOPE --group G` starts one; `ota rollout status|resume|abort --group G` look "
                    "at, continue or stop it from any later invocation (the state is the file "
                    "STATE_DIR/rollout-G.json).")
    ro.add_argument("what", metavar="ENVELOPE|status|resume|abort",
                    help="the envelope from `ota sign --group G` to start a rollout, or an action on the saved one")
    ro.add_argument("--group", required=True, help="device group (devices announce theirs: config device.groups)")
    ro.add_argument("--artifact", type=Path, default=None, help="model file, published on each device's artifact topic "
                    "(needed unless the envelope has an --artifact-url)")
    ro.add_argument("--canary", type=int, default=1, help="devices updated first, alone (default 1; 0 = none)")
    ro.add_argument("--batch", default="25%", help="devices per batch after the canaries: a share of the group "
                    "(25%%) or a count (10) (default 25%%)")
    ro.add_argument("--batch-timeout", type=float, default=900.0,
                    help="seconds a batch may take before the rollout pauses (default 900)")
    ro.add_argument("--discover-timeout", type=float, default=5.0,
                    help="seconds at most to read the devices' retained topics (default 5)")
    ro.add_argument("--state-dir", type=Path, default=None,
                    help="folder of the rollout state file (default: the config's device.state_dir, else the "
                         "current folder)")
    ro.add_argument("--json", action="store_true", help="status: print the saved state as JSON")
    add_broker_options(ro, site_help="only devices of this site (default: every site)",
                       line_help="only devices of this line (default: every line)")
    ro.set_defaults(func=_rollout)


def _rollout(args: argparse.Namespace) -> int:
    from smartstock.ota.addressing import check_level
    from smartstock.ota.rollout import parse_batch, state_path

    check_level(args.group, "--group")
    parse_batch(args.batch)
    if not 0 <= args.canary <= 1000:
        raise ConfigError(f"--canary {args.canary}: must be 0-1000")
    if not 1 <= args.batch_timeout <= 7 * 86400 or not 0.5 <= args.discover_timeout <= 600:
        raise ConfigError("--batch-timeout must be 1 s - 7 days and --discover-timeout 0.5-600 s")
    conn, cfg = broker_conn(args)
    state_dir = args.state_dir or cfg.device.state_dir or Path.cwd()
    path = state_path(state_dir, args.group)
    if args.what == "status":
        return _status(path, args.json)
    with _locked(path):
        if args.what == "abort":
            return _abort(path, conn, args.discover_timeout)
        if args.what == "resume":
            return _resume(path, args, conn)
        return _start(Path(args.what), path, args, conn, cfg)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One invocation at a time drives a rollout (two would publish and judge the same batch twice)."""
    import fcntl

    lock = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock, "a+")
    except OSError as e:
        raise ConfigError(f"{lock}: cannot create the rollout lock: {e.strerror}", hint="pick a writable --state-dir") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"another `ota rollout` is driving {path.name} now",
                              hint="stop it (Ctrl-C) first, or watch it with `ota rollout status`") from None
        yield


def _say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def _start(envelope: Path, path: Path, args: argparse.Namespace, conn: Any, cfg: Any) -> int:
    from smartstock.commands.ota_cmd import read_release
    from smartstock.ota import link
    from smartstock.ota.rollout import load, save
    from smartstock.ota.rollout_run import discover, filters, new_rollout
    from smartstock.ota.rollout_run import open_feed

    raw, release, data = read_release(envelope, args.artifact)
    t = release.target
    if not (t.any_device or args.group in t.groups):
        raise ConfigError(f"{envelope} is signed for groups {t.groups} / devices {t.devices}, not group {args.group!r}: "
                          "its devices would refuse it (wrong_target)",
                          hint=f"sign it with `smartstock ota sign ... --group {args.group}`")
    if path.exists():
        old = load(path)
        if old.status not in ("completed", "aborted"):
            raise ConfigError(f"the rollout of release {old.release} to group {args.group} is {old.status} ({path})",
                              hint=f"resume or abort it first: smartstock ota rollout resume|abort --group {args.group}")
    prefix = (args.prefix or cfg.mqtt.prefix).strip("/")
    client = link.connect(conn, name="smartstock-rollout")
    try:
        feed = open_feed(client, prefix, with_state=True)
        fleet = discover(feed, prefix, args.discover_timeout)
        client.unsubscribe(filters(prefix, with_state=True)[-1])  # states are large and only needed to find members
        ro = new_rollout(fleet, group=args.group, site=args.site, line=args.line, release=release,
                         envelope_path=envelope, envelope_sha256=hashlib.sha256(raw).hexdigest(),
                         artifact_path=args.artifact, canary=args.canary, batch=args.batch,
                         batch_timeout_s=args.batch_timeout)
        save(ro, path)
        _say(f"rollout of {release.kind} {release.model_id} release {release.release} to group {args.group}: "
             f"{len(ro.devices)} device(s) in {len(ro.batches)} step(s) "
             f"({', '.join(f'{ro.batch_label(i)}: {len(b)}' for i, b in enumerate(ro.batches))}); state in {path}")
        if fleet.silent():
            _say(f"note: {fleet.silent()} device(s) on the broker name no groups (older SmartStock): they get the "
                 "release from the group topic after the last batch if they are in the group")
        return _drive(ro, path, client, feed, fleet, raw, data)
    finally:
        link.close(client)


def _resume(path: Path, args: argparse.Namespace, conn: Any) -> int:
    from smartstock.commands.ota_cmd import read_release
    from smartstock.ota import link
    from smartstock.ota.rollout import load
    from smartstock.ota.rollout_run import discover
    from smartstock.ota.rollout_run import open_feed

    ro = load(path)
    if ro.status in ("completed", "aborted"):
        raise ConfigError(f"the rollout of release {ro.release} to group {ro.group} is {ro.status}; nothing to resume",
                          hint="start a new one with `smartstock ota rollout ENVELOPE --group G`")
    raw, release, data = read_release(Path(ro.envelope), Path(ro.artifact) if ro.artifact else None)
    if hashlib.sha256(raw).hexdigest() != ro.envelope_sha256 or release.artifact.sha256 != ro.sha256:
        raise InputError(f"{ro.envelope} changed since the rollout started ({path})",
                         hint="put back the envelope the rollout started with, or abort it and start a new one")
    if args.prefix and args.prefix.strip("/") != ro.prefix:
        raise ConfigError(f"--prefix {args.prefix!r} differs from the rollout's {ro.prefix!r}")
    _say(f"resuming the rollout of release {ro.release} to group {ro.group} ({ro.status}"
         + (f": {ro.reason}" if ro.reason else "") + f"), at {ro.batch_label(min(ro.current, len(ro.batches) - 1))}")
    client = link.connect(conn, name="smartstock-rollout")
    try:
        feed = open_feed(client, ro.prefix, with_state=False)
        fleet = discover(feed, ro.prefix, args.discover_timeout)
        return _drive(ro, path, client, feed, fleet, raw, data)
    finally:
        link.close(client)


def _drive(ro: Any, path: Path, client: Any, feed: Any, fleet: Any, raw: bytes, data: bytes | None) -> int:
    from smartstock.ota.rollout_run import Driver

    driver = Driver(ro, path, client, feed, fleet, raw, data, _say)

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        status = driver.run()
    except KeyboardInterrupt:
        driver.interrupted()
        return INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    if status == "paused":
        print(f"error: rollout paused: {ro.reason}", file=sys.stderr)
        print(f"look at it with `smartstock ota rollout status --group {ro.group}`; then `resume` (the failed device "
              "stays on its model) or `abort`", file=sys.stderr)
        return OtaRejected.exit_code
    return 0


def _abort(path: Path, conn: Any, discover_timeout: float) -> int:
    from smartstock.ota import link
    from smartstock.ota.rollout import load, save
    from smartstock.ota.rollout_run import abort, discover
    from smartstock.ota.rollout_run import open_feed

    ro = load(path)
    if ro.status in ("completed", "aborted"):
        raise ConfigError(f"the rollout of release {ro.release} to group {ro.group} is already {ro.status}",
                          hint="to replace a completed release, sign and roll out a higher release")
    client = link.connect(conn, name="smartstock-rollout")
    try:
        fleet = discover(open_feed(client, ro.prefix, with_state=False), ro.prefix, discover_timeout)
        withdrawn = abort(ro, client, fleet)
    finally:
        link.close(client)
    save(ro, path)
    c = ro.counts()
    _say(f"aborted the rollout of release {ro.release} to group {ro.group}: withdrawn from {len(withdrawn)} device(s)"
         + (f" ({', '.join(withdrawn[:10])})" if withdrawn else "")
         + f"; {c['committed']} device(s) that committed keep release {ro.release}")
    return 0


def _status(path: Path, as_json: bool) -> int:
    from smartstock.ota.rollout import load

    ro = load(path)
    if as_json:
        print_json(ro.model_dump(mode="json"))
    else:
        c = ro.counts()
        print(f"rollout of {ro.kind} {ro.model_id} release {ro.release} to group {ro.group}: {ro.status}"
              + (f" ({ro.reason})" if ro.reason else ""))
        print(f"  step {min(ro.current + 1, len(ro.batches))}/{len(ro.batches)}; "
              + ", ".join(f"{n} {k}" for k, n in c.items() if n) + f"; started {ro.started_at}, updated {ro.updated_at}")
        for i, batch in enumerate(ro.batches):
            print(f"  {ro.batch_label(i)}:")
            for b in batch:
                d = ro.devices[b]
                print(f"    {d.name:40s} {d.status:9s} {d.reason}")
    return OtaRejected.exit_code if ro.status == "paused" else 0
