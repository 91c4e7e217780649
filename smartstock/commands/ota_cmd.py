"""`smartstock ota keygen | sign | push | status | rollout`: the technician's side of over-the-air updates."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from pathlib import Path
from typing import Any

from smartstock.commands import rollout_cmd
from smartstock.commands._broker import add_broker_options as _add_broker_options
from smartstock.commands._broker import broker_conn
from smartstock.commands._common import print_json
from smartstock.errors import ConfigError, InputError, OtaRejected


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ota", help="sign and push model updates (technician tool)")
    osub = p.add_subparsers(dest="ota_command", metavar="ACTION", required=True)

    kg = osub.add_parser("keygen", help="create an Ed25519 signing key pair")
    kg.add_argument("--out", type=Path, required=True, help="folder for <key-id>.key (0600) and <key-id>.pub")
    kg.add_argument("--key-id", required=True, help="name of the key, e.g. plant-2026 (devices trust <key-id>.pub)")
    kg.set_defaults(func=_keygen)

    sg = osub.add_parser("sign", help="write a signed update envelope for a model file")
    sg.add_argument("model", type=Path, help="model file (.onnx/.tflite) with its manifest.json beside it")
    sg.add_argument("--release", type=int, required=True, help="release number (must be higher than installed)")
    sg.add_argument("--key", type=Path, required=True, help="private key from `ota keygen` (<key-id>.key)")
    sg.add_argument("--key-id", default=None, help="key id (default: the key file's name without .key)")
    sg.add_argument("--target-device", action="append", default=[], metavar="ID", help="device id (repeatable)")
    sg.add_argument("--group", action="append", default=[], metavar="G", help="device group (repeatable)")
    sg.add_argument("--any-device", action="store_true", help="valid for every device that trusts the key")
    sg.add_argument("--expires", default="30d", help="validity: 30d, 12h, an ISO time, or 'never' (default 30d)")
    sg.add_argument("--allow-downgrade", action="store_true", help="may replace a higher release (device must allow too)")
    sg.add_argument("--artifact-url", default=None, help="https URL the device downloads the model from "
                    "(default: the retained MQTT artifact topic `ota push --artifact` publishes)")
    sg.add_argument("--summary", default="", help="release notes shown on dashboards")
    sg.add_argument("--live-trial", action="store_true",
                    help="book the new model's verdicts during its trial (default: it runs in shadow beside the "
                         "trusted model, whose verdicts are booked, until it is committed)")
    sg.add_argument("--out", type=Path, default=None, help="envelope file (default: <model-id>-r<N>.envelope.json)")
    sg.set_defaults(func=_sign)

    pu = osub.add_parser("push", help="publish an envelope (and its model) to a device or group over MQTT")
    pu.add_argument("envelope", type=Path)
    who = pu.add_mutually_exclusive_group(required=True)
    who.add_argument("--device", help="device id")
    who.add_argument("--group", help="device group")
    pu.add_argument("--artifact", type=Path, default=None, help="model file to publish retained on the artifact topic")
    pu.add_argument("--wait", action="store_true",
                    help="follow the device's model/state until the update is committed, refused or rolled back "
                         "(exit 7 unless committed or already up to date); needs --device")
    pu.add_argument("--wait-timeout", type=float, default=900.0, help="seconds --wait follows at most (default 900)")
    _add_broker_options(pu)
    pu.set_defaults(func=_push)

    st = osub.add_parser("status", help="show a device's model/state")
    st.add_argument("--device", required=True)
    st.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the retained state")
    _add_broker_options(st)
    st.set_defaults(func=_status)

    rollout_cmd.add_parser(osub)


# -- keygen / sign ------------------------------------------------------------------------------
def _keygen(args: argparse.Namespace) -> int:
    from smartstock.ota.keys import generate_keypair

    priv, pub = generate_keypair(args.out, args.key_id)
    print(f"private key: {priv} (mode 600; keep it off the devices)")
    print(f"public key:  {pub} (copy into each device's ota.keyring_dir)")
    return 0


def parse_expires(text: str, now: dt.datetime) -> dt.datetime | None:
    if text == "never":
        return None
    m = re.fullmatch(r"(\d+)([dhm])", text)
    if m:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[m.group(2)]
        return now + dt.timedelta(**{unit: int(m.group(1))})
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--expires {text!r}: not a duration or ISO time",
                          hint="use e.g. 30d, 12h, 2026-12-31T00:00:00Z or never") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def _sign(args: argparse.Namespace) -> int:
    from smartstock.ota.keys import load_private_key
    from smartstock.ota.sign import sign_model

    key = load_private_key(args.key)
    key_id = args.key_id or args.key.name.removesuffix(".key")
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    env, rel = sign_model(args.model, release=args.release, key=key, key_id=key_id, devices=args.target_device,
                          groups=args.group, any_device=args.any_device, expires=parse_expires(args.expires, now),
                          allow_downgrade=args.allow_downgrade, url=args.artifact_url, summary=args.summary, now=now,
                          live_trial=args.live_trial)
    out = args.out or Path(f"{rel.model_id}-r{rel.release}.envelope.json")
    try:
        out.write_bytes(env.to_json())
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write the envelope: {e.strerror}",
                          hint=f"create the folder first (mkdir -p {out.parent}) or pick another --out") from None
    a = rel.artifact
    print(f"signed {rel.kind} {rel.model_id} release {rel.release} ({a.name}, sha256 {a.sha256[:12]}..., {a.size} bytes) "
          f"with key {key_id}; expires {rel.expires.isoformat() if rel.expires else 'never'}")
    print(f"envelope: {out}")
    return 0


# -- push / status ------------------------------------------------------------------------------
def _bases(args: argparse.Namespace, cfg: Any) -> str:
    from smartstock.ota.addressing import device_base, group_base

    prefix = args.prefix or cfg.mqtt.prefix
    if getattr(args, "group", None):
        return group_base(prefix, args.group)
    return device_base(prefix, args.site or cfg.device.site, args.line or cfg.device.line, args.device)


def read_release(envelope: Path, artifact: Path | None) -> tuple[bytes, Any, bytes | None]:
    """The envelope's bytes, its (unverified: the devices verify) release manifest, and the artifact's bytes
    checked against the signed size and sha256; an envelope without an artifact URL needs the artifact."""
    import hashlib

    from smartstock.ota.envelope import parse_envelope
    from smartstock.ota.refusal import UpdateRefused
    from smartstock.ota.release import parse_release

    try:
        raw = envelope.read_bytes()
        release = parse_release(parse_envelope(raw).manifest_bytes)
    except OSError as e:
        raise InputError(f"{envelope}: cannot read: {e.strerror}") from None
    except UpdateRefused as e:
        raise InputError(f"{envelope}: {e}", hint="push the file `smartstock ota sign` wrote") from None
    data = None
    if artifact is not None:
        try:
            data = artifact.read_bytes()
        except OSError as e:
            raise InputError(f"{artifact}: cannot read the model file: {e.strerror}") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != release.artifact.sha256 or len(data) != release.artifact.size:
            raise InputError(f"{artifact}: sha256 {digest[:12]}... / {len(data)} bytes does not match the envelope's "
                             f"{release.artifact.sha256[:12]}... / {release.artifact.size} bytes",
                             hint="pass the model file that was signed")
    elif release.artifact.url is None:
        raise ConfigError("the envelope has no --artifact-url, so the model must travel over MQTT",
                          hint="add --artifact MODEL_FILE")
    return raw, release, data


def _push(args: argparse.Namespace) -> int:
    from smartstock.ota import addressing, link

    raw, release, data = read_release(args.envelope, args.artifact)
    if args.wait and not args.device:
        raise ConfigError("--wait follows one device's model/state", hint="use --device ID with --wait")
    conn, cfg = broker_conn(args)
    base = _bases(args, cfg)
    client = link.connect(conn)
    try:
        feed = link.Feed(client, [addressing.state(base)]) if args.device else None  # before publishing
        first = feed.next(2.0) if feed else None
        before = first.payload if first is not None and first.retained else None
        link.publish_release(client, base, raw, data, release.artifact.sha256)
        print(f"pushed {release.kind} release {release.release} to {base}"
              + (f" (artifact {len(data)} bytes retained)" if data is not None else f" (artifact from {release.artifact.url})"))
        if isinstance(before, dict) and before.get("status") == "disabled":
            print(f"error: {args.device} says {before.get('detail') or 'updates disabled'}; it will not install "
                  "this release until then", file=sys.stderr)
            return OtaRejected.exit_code
        if not args.wait:
            who = f"--device {args.device}" if args.device else "--device ID"
            print(f"follow it with: smartstock ota status {who} --url {args.url or 'mqtt://HOST:PORT'} "
                  "(or push with --wait)")
            return 0
        return _follow(feed, release.kind, args.wait_timeout, first if first is not None and not first.retained else None)
    finally:
        link.close(client)


def _follow(feed: Any, kind: str, timeout: float, first: Any = None) -> int:
    """Print each step of `kind` until a final one; 0 committed / up to date, 7 refused / rolled back."""
    from smartstock.ota.report import DONE, FAILED

    deadline = time.monotonic() + timeout
    while True:
        got, first = (first, None) if first is not None else (feed.next(min(5.0, deadline - time.monotonic())), None)
        if got is None:
            if time.monotonic() >= deadline:
                print(f"error: no final state on {', '.join(feed.filters)} within {timeout:g} s; the device may be offline "
                      "(it installs the retained release when it comes back)", file=sys.stderr)
                return 1
            continue
        st = got.payload
        if got.retained or not isinstance(st, dict) or st.get("step_kind", st.get("kind")) != kind:
            continue
        status = st.get("status")
        print(f"{status}" + (f" ({st['error']})" if st.get("error") else "") + (f": {st['detail']}" if st.get("detail") else ""),
              flush=True)
        if status in DONE:
            if status in FAILED:
                print(f"error: the update was {str(status).replace('_', ' ')}", file=sys.stderr)
                return OtaRejected.exit_code
            return 0


def _status(args: argparse.Namespace) -> int:
    from smartstock.ota import addressing, link

    conn, cfg = broker_conn(args)
    topic = addressing.state(_bases(args, cfg))
    client = link.connect(conn)
    try:
        got = link.Feed(client, [topic]).next(args.timeout)
    finally:
        link.close(client)
    if got is None or not isinstance(got.payload, dict):
        print(f"no model state on {topic} within {args.timeout:g} s (device never reported, or wrong --device/--site/--line)",
              file=sys.stderr)
        return 1
    st = got.payload
    print_json(st)
    from smartstock.ota.report import FAILED

    if st.get("status") in FAILED:
        print(f"error: the last update step was {st['status']}" + (f" ({st['error']})" if st.get("error") else "")
              + (f": {st['detail']}" if st.get("detail") else ""), file=sys.stderr)
        return OtaRejected.exit_code
    return 0
