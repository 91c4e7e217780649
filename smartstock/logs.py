"""Logging set up once, to stderr (stdout stays clean for command output, e.g. `smartstock stock > file`),
in a form journald and `docker logs` read well (both collect stderr)."""

from __future__ import annotations

import logging
import os
import sys

from smartstock.redact import redact

_FORMAT_TTY = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Under systemd (JOURNAL_STREAM set) journald adds its own timestamp; the <N> prefix sets priority.
_FORMAT_JOURNAL = "%(journal_prefix)s%(name)s: %(message)s"
_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class _RedactingFormatter(logging.Formatter):
    """Every line (message, arguments and traceback) with URL credentials hidden."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _JournalPrefix(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.journal_prefix = f"<{_PRIORITY.get(record.levelname, 6)}>"
        return True


def setup_logging(level: str | int = "INFO") -> None:
    """Configure the root logger exactly once; later calls only change the level."""
    root = logging.getLogger()
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            level = logging.INFO
    root.setLevel(level)
    if getattr(setup_logging, "_done", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.addFilter(_JournalPrefix())
        handler.setFormatter(_RedactingFormatter(_FORMAT_JOURNAL))
    else:
        handler.setFormatter(_RedactingFormatter(_FORMAT_TTY, datefmt="%Y-%m-%dT%H:%M:%S"))
    root.addHandler(handler)
    for noisy in ("matplotlib", "PIL", "urllib3", "h5py", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    setup_logging._done = True  # type: ignore[attr-defined]
