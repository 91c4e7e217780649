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


class Progress:
    """`label: i/total (rate/s)` on one rewritten stderr line while a long command works, when stderr
    is a terminal; for journald and files a log line (INFO) every `log_every` items, at most one per
    `log_interval_s`, and one at the end when the work took that long (a short run logs nothing, so a
    four-SKU report does not print four progress lines). `log_every = 0` is silent (benchmarks)."""

    def __init__(self, label: str, total: int, *, log_every: int = 100, interval_s: float = 0.5,
                 log_interval_s: float = 10.0) -> None:
        import time

        self.label, self.total, self.log_every, self.interval_s = label, total, log_every, interval_s
        self.log_interval_s = log_interval_s
        self._clock = time.monotonic
        self._t0 = self._last = self._last_log = self._clock()
        self.tty = bool(log_every) and total > 1 and sys.stderr.isatty()

    def __call__(self, done: int) -> None:
        if not self.log_every:
            return
        now = self._clock()
        final = done >= self.total
        rate = done / max(now - self._t0, 1e-9)
        if self.tty and (final or now - self._last >= self.interval_s):
            self._last = now
            sys.stderr.write(f"\r{self.label} {done}/{self.total} ({rate:.1f}/s)" + ("\n" if final else ""))
            sys.stderr.flush()
        long_run = now - self._t0 >= self.log_interval_s
        if (final and long_run) or (done % self.log_every == 0 and now - self._last_log >= self.log_interval_s):
            self._last_log = now
            logging.getLogger("smartstock.progress").info("%s %d/%d (%.1f/s)", self.label, done, self.total, rate)
