"""`smartstock dataset list | label | export`: learning from the line.

The device keeps a snapshot of every defective part and of every part scored close to the threshold
(`uncertain`); an operator labels them (`dataset label ID LABEL`, or MQTT `cmd/label`), and `dataset
export` writes the labelled ones as a class folder that `smartstock train cnn` takes, so a technician
can retrain, sign and push a better model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
from pathlib import Path

from smartstock.commands._common import add_store_options, load, print_table, store_from_args
from smartstock.config import resolve_state_dir
from smartstock.errors import ConfigError
from smartstock.store.snapshots import FOLDER, label_snapshot, snapshot_file, snapshots_since

_RELATIVE = re.compile(r"^(\d{1,5})([hd])$")


def register(sub: argparse._SubParsersAction) -> None:
    ds = sub.add_parser("dataset", help="label the device's snapshots and export them as a training set")
    dsub = ds.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)

    ls = dsub.add_parser("list", help="snapshots since a time, with the model's and the operator's label")
    ls.add_argument("--since", default="7d", help="ISO date/time (UTC) or 24h / 7d (default 7d)")
    ls.add_argument("--uncertain", action="store_true", help="only parts scored close to the threshold")
    add_store_options(ls)
    ls.set_defaults(func=_list)

    lb = dsub.add_parser("label", help="record the operator's label for one snapshot")
    lb.add_argument("snapshot_id", help="the snapshot's id (32 hex digits, shown by `dataset list` and the status page)")
    lb.add_argument("label", help="class name, e.g. ok, scratch (1-32 letters, digits, _ or -)")
    add_store_options(lb)
    lb.set_defaults(func=_label)

    ex = dsub.add_parser("export", help="write labelled snapshots as a class folder for `smartstock train cnn`")
    ex.add_argument("--since", required=True, help="ISO date/time (UTC) or 24h / 7d")
    ex.add_argument("--out", type=Path, required=True, help="output folder (one subfolder per label)")
    add_store_options(ex)
    ex.set_defaults(func=_export)


def parse_since(text: str, now: dt.datetime | None = None) -> str:
    """`2026-11-30`, `2026-11-30T08:00`, `...Z`, or `24h` / `7d` -> the store's timestamp form."""
    now = now or dt.datetime.now(dt.timezone.utc)
    m = _RELATIVE.match(text.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        when = now - (dt.timedelta(hours=n) if unit == "h" else dt.timedelta(days=n))
    else:
        try:
            when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"--since {text!r} is not a date/time",
                              hint="use an ISO date or time in UTC (2026-11-30, 2026-11-30T08:00) or 24h / 7d") from None
        when = when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _list(args: argparse.Namespace) -> int:
    since = parse_since(args.since)
    with store_from_args(args) as store:
        rows = snapshots_since(store, since, labelled_only=False)
    rows = [r for r in rows if r["reason"] == "uncertain"] if args.uncertain else rows
    print_table([{"id": r["event_id"], "time": r["ts"], "reason": r["reason"], "model": r["label"],
                  "scores": " ".join(f"{k}={v:.2f}" for k, v in r["scores"].items()),
                  "label": r["operator_label"] or ""} for r in rows],
                ["id", "time", "reason", "model", "scores", "label"])
    return 0


def _label(args: argparse.Namespace) -> int:
    with store_from_args(args) as store:
        r = label_snapshot(store, args.snapshot_id, args.label, by="cli")
    print(f"snapshot {r['id']} ({r['reason']}, model said {r['model_label']}) labelled {r['label']}")
    return 0


def _export(args: argparse.Namespace) -> int:
    since = parse_since(args.since)
    config = load(args)
    state_dir = resolve_state_dir(getattr(args, "state_dir", None), config)
    with store_from_args(args, config) as store:
        rows = snapshots_since(store, since, labelled_only=True)
    folder = state_dir / FOLDER
    written, missing, index = {}, [], []
    for r in rows:
        src = snapshot_file(folder, r["file"]) or next(  # several cameras: one subfolder each
            (f for sub in sorted(folder.glob("*/")) if (f := snapshot_file(sub, r["file"]))), None)
        if src is None:  # deleted by the snapshot quota, or never written
            missing.append(r["event_id"])
            continue
        label = r["operator_label"]
        dst = args.out / label / f"{r['event_id']}.jpg"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        written[label] = written.get(label, 0) + 1
        index.append({"id": r["event_id"], "ts": r["ts"], "label": label, "model_label": r["label"],
                      "reason": r["reason"], "scores": r["scores"]})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "export.json").write_text(json.dumps({"since": since, "images": index, "missing": missing},
                                                     indent=1) + "\n")
    print(f"exported {sum(written.values())} labelled snapshot(s) since {since} to {args.out}: "
          f"{dict(sorted(written.items())) or 'none'}")
    if missing:
        print(f"{len(missing)} labelled snapshot(s) no longer on disk (snapshot quota), skipped")
    few = sorted(k for k, v in written.items() if v < 3)
    if len(written) < 2 or few:
        print("note: `smartstock train cnn` needs at least 2 class folders with 3 images each; add these to your "
              "existing training set (copy the class folders over it) before training")
    return 0
