"""Progress lines for journald/files: a short run stays quiet, a long one logs at most every interval."""
from __future__ import annotations

import logging

from smartstock.logs import Progress


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _run(caplog, steps: list[float], total: int, log_every: int) -> list[str]:
    progress = Progress("work", total, log_every=log_every, log_interval_s=10.0)
    clock = _Clock()
    progress._clock = clock
    progress._t0 = progress._last = progress._last_log = 0.0
    with caplog.at_level(logging.INFO, logger="smartstock.progress"):
        for done, t in enumerate(steps, start=1):
            clock.t = t
            progress(done)
    return [r.getMessage() for r in caplog.records if r.name == "smartstock.progress"]


def test_a_short_run_logs_no_progress_lines(caplog):
    assert _run(caplog, [0.1, 0.2, 0.3, 0.4], total=4, log_every=1) == []


def test_a_long_run_logs_at_most_once_per_interval_and_at_the_end(caplog):
    lines = _run(caplog, [float(i) for i in range(1, 31)], total=30, log_every=1)
    assert [line.split()[1] for line in lines] == ["10/30", "20/30", "30/30"]


def test_the_final_line_comes_whenever_the_run_was_long(caplog):
    lines = _run(caplog, [float(i) for i in range(1, 26)], total=25, log_every=1)
    assert [line.split()[1] for line in lines] == ["10/25", "20/25", "25/25"]
    caplog.clear()
    lines = _run(caplog, [0.1 * i for i in range(1, 151)], total=150, log_every=100)
    assert [line.split()[1] for line in lines] == ["100/150", "150/150"]
