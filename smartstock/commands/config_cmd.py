"""`smartstock config check FILE` and `smartstock config show`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smartstock.commands._common import add_config_option, load, print_json
from smartstock.config import load_config
from smartstock.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="check or show the configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = csub.add_parser("check", help="validate a config file and list every problem")
    check.add_argument("file", type=Path)
    check.set_defaults(func=_check)
    show = csub.add_parser("show", help="print the effective configuration as JSON")
    add_config_option(show)
    show.set_defaults(func=_show)


def _check(args: argparse.Namespace) -> int:
    try:
        load_config(args.file)
    except ConfigError as e:
        print(f"{args.file}: INVALID", file=sys.stderr)
        for problem in e.problems or [str(e)]:
            print(f"  - {problem}", file=sys.stderr)
        return e.exit_code
    print(f"{args.file}: OK")
    return 0


def _show(args: argparse.Namespace) -> int:
    print_json(load(args).model_dump(mode="json"))
    return 0
