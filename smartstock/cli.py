"""The `smartstock` command. Subcommands live in `smartstock.commands.*`, each with `register()`.

Heavy parts (TensorFlow, ONNX Runtime, statsmodels, paho) are imported inside the handlers, so
`smartstock --help` and the light commands start fast and training code never loads on a device
unless a training command is run.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from smartstock import __version__
from smartstock.errors import ConfigError, SmartStockError
from smartstock.logs import setup_logging

logger = logging.getLogger(__name__)

# Each module defines `register(subparsers)`; order is the order of `smartstock --help`.
COMMAND_MODULES = [
    "smartstock.commands.config_cmd",
    "smartstock.commands.inventory_cmd",
    "smartstock.commands.sales_cmd",
    "smartstock.commands.demo_cmd",
    "smartstock.commands.train_cmd",
    "smartstock.commands.vision_cmd",
    "smartstock.commands.forecast_cmd",
    "smartstock.commands.run_cmd",
    "smartstock.commands.mqtt_cmd",
    "smartstock.commands.ota_cmd",
    "smartstock.commands.report_cmd",
]


class _Parser(argparse.ArgumentParser):
    """argparse that exits with code 2 and a one-line hint instead of a usage dump on errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}\n(run `{self.prog} --help` for the options)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="smartstock", description="SmartStock edge inspection appliance")
    parser.add_argument("--version", action="version", version=f"smartstock {__version__}")
    parser.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level (default: the config's, else INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # not written yet: the command simply is not offered
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Logs go to stdout; with --json only warnings are logged so the output stays parseable JSON.
    setup_logging(args.log_level or ("WARNING" if getattr(args, "json", False) else "INFO"))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
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
