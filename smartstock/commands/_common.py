"""Options and helpers shared by subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from smartstock.config import Config, load_config, resolve_state_dir
from smartstock.store import Store, open_store


def add_config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", type=Path, default=None,
                   help="smartstock.toml (default: $SMARTSTOCK_CONFIG, else built-in defaults)")


def add_store_options(p: argparse.ArgumentParser) -> None:
    """--config and --state-dir, for every command that touches the store."""
    add_config_option(p)
    p.add_argument("--state-dir", type=Path, default=None,
                   help="state directory holding the store (default: $SMARTSTOCK_STATE_DIR, the config, ./state)")


def load(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None))


def store_from_args(args: argparse.Namespace, config: Config | None = None) -> Store:
    config = config if config is not None else load(args)
    return open_store(resolve_state_dir(getattr(args, "state_dir", None), config))


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def print_table(rows: list[dict[str, Any]], columns: list[str] | None = None, floatfmt: str = "{:.2f}") -> None:
    """Plain aligned text table; floats formatted with `floatfmt`."""
    if not rows:
        print("(no rows)")
        return
    columns = columns or list(rows[0].keys())
    cells = [[floatfmt.format(r.get(c)) if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns]
             for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(row, widths)))


def _numeric(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def cli_command() -> str:
    """How to call this very `smartstock` in a suggested command line: plain `smartstock` when that is
    on PATH and is this installation, else the script beside this interpreter (e.g. `.venv/bin/smartstock`
    after `make demo`, whose venv is not activated), else `python -m smartstock`."""
    import os
    import shutil

    here = Path(sys.executable).parent / "smartstock"
    found = shutil.which("smartstock")
    if found and here.exists() and Path(found).resolve() == here.resolve():
        return "smartstock"
    if here.exists():
        rel = os.path.relpath(here)
        return rel if not rel.startswith("..") else str(here)
    return f"{sys.executable} -m smartstock"
