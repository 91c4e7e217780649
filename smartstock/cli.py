"""The `smartstock` command: a small host for subcommands.

The library's own commands live in `smartstock.commands.*` (each module has `register(subparsers)`).
Other packages contribute commands through the entry-point group `smartstock.commands` (pyproject.toml):
`edge` adds `run` and `demo`, `training` adds `train`. The library never imports those packages by name.

Heavy parts (TensorFlow, ONNX Runtime, statsmodels, paho) are imported inside the handlers, so
`smartstock --help` and the light commands start fast; a handler that needs an extra that is not
installed ends with exit 5 and the extra to install, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable
from importlib.metadata import entry_points

from smartstock import __version__
from smartstock.errors import ConfigError, SmartStockError
from smartstock.extras import missing_extra
from smartstock.logs import setup_logging

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "smartstock.commands"

# The library's own commands, in `smartstock --help` order; contributed ones follow.
COMMAND_MODULES = [
    "smartstock.commands.config_cmd",
    "smartstock.commands.inventory_cmd",
    "smartstock.commands.sales_cmd",
    "smartstock.commands.eval_cmd",
    "smartstock.commands.forecast_cmd",
    "smartstock.commands.mqtt_cmd",
    "smartstock.commands.ota_cmd",
    "smartstock.commands.fleet_cmd",
    "smartstock.commands.report_cmd",
    "smartstock.commands.dataset_cmd",
]

Register = Callable[[argparse._SubParsersAction], None]


class _Parser(argparse.ArgumentParser):
    """argparse that exits with code 2 and a one-line hint instead of a usage dump on errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}\n(run `{self.prog} --help` for the options)\n")
        raise SystemExit(2)


def registrars() -> list[tuple[str, Register]]:
    """(name, register) of every command module: the library's, then each contributed entry point.

    A module that fails to import is a bug and raises; a contributed command whose optional
    dependency is missing at import time is still offered, and says which extra to install."""
    out: list[tuple[str, Register]] = [(name, importlib.import_module(name).register) for name in COMMAND_MODULES]
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            out.append((ep.name, ep.load()))
        except ModuleNotFoundError as e:
            advice = missing_extra(e)
            if advice is None:
                raise
            out.append((ep.name, _unavailable(ep.name, advice)))
    return out


def _unavailable(name: str, advice: SmartStockError) -> Register:
    def register(sub: argparse._SubParsersAction) -> None:
        p = sub.add_parser(name, help=f"(unavailable: {advice})", add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)

        def fail(_args: argparse.Namespace) -> int:
            raise advice

        p.set_defaults(func=fail)

    return register


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="smartstock", description="SmartStock edge inspection appliance")
    parser.add_argument("--version", action="version", version=f"smartstock {__version__}")
    parser.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level (default: the config's, else INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for _name, register in registrars():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Logs go to stderr; with --json only warnings are logged so the output stays quiet.
    setup_logging(args.log_level or ("WARNING" if getattr(args, "json", False) else "INFO"))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        try:
            return int(args.func(args) or 0)
        except ModuleNotFoundError as e:
            advice = missing_extra(e)
            if advice is None:
                raise
            raise advice from None
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        for problem in e.problems:
            print(f"  - {problem}", file=sys.stderr)
        return e.exit_code
    except SmartStockError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `smartstock ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
