"""Forecasting and policy planning in a child process, away from the real-time loop.

Forecasters (statsforecast's numba JIT, statsmodels' optimisers) can hold the GIL for tens of seconds;
run in the service's own process they starve the capture thread (frames stop, the camera looks down).
A short-lived child (`python -m edge.planner_proc STATE_DIR`, config as JSON on stdin, plans as JSON
on stdout) keeps the loop on time, and its memory is returned to the system when it exits.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from smartstock.config import Config

logger = logging.getLogger(__name__)


class PlannerFailed(RuntimeError):
    """The child planner exited with an error; the message carries its last words."""


def plan_in_subprocess(state_dir: Path, config: Config, stop_event: threading.Event,
                       timeout_s: float = 900.0) -> list[dict[str, Any]] | None:
    """Plans per SKU computed by a child process; None when stopped before it finished."""
    proc = subprocess.Popen([sys.executable, "-m", "edge.planner_proc", str(state_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: dict[str, str] = {}

    def talk() -> None:  # communicate() in a thread so the caller can keep watching stop_event
        out["stdout"], out["stderr"] = proc.communicate(config.model_dump_json())

    t = threading.Thread(target=talk, name="planner-io", daemon=True)
    t.start()
    deadline = time.monotonic() + timeout_s
    while t.is_alive():
        if stop_event.wait(0.2) or time.monotonic() > deadline:
            proc.kill()
            t.join(5)
            if stop_event.is_set():
                return None
            raise PlannerFailed(f"planner did not finish within {timeout_s:g} s")
    for line in out.get("stderr", "").splitlines():
        if line.strip():
            logger.info("planner: %s", line)
    if proc.returncode != 0:
        last = (out.get("stderr", "").strip().splitlines() or ["no output"])[-1]
        raise PlannerFailed(f"planner exited with {proc.returncode}: {last}")
    lines = out.get("stdout", "").strip().splitlines()
    if not lines:
        raise PlannerFailed("planner printed no result")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from smartstock.planning import refresh_plans
    from smartstock.store import open_store

    config = Config.model_validate_json(sys.stdin.read())
    store = open_store(Path(argv[0]))
    try:
        plans = refresh_plans(store, config)
    finally:
        store.close()
    sys.stdout.write(json.dumps(plans, default=_plain) + "\n")
    return 0


def _plain(v: Any) -> Any:
    """numpy scalars/arrays and other odd values as plain JSON."""
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


if __name__ == "__main__":
    sys.exit(main())
