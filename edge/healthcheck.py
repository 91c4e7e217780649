"""The container's HEALTHCHECK: `python -m edge.healthcheck` (exit 0 healthy, 1 not).

Docker only marks a container "unhealthy"; it never restarts it. So this check also acts: after
`TERM_AFTER` failed checks in a row it sends SIGTERM to PID 1 (with `docker run --init` that is the
init, which forwards it: the service drains and exits), after `KILL_AFTER` it SIGKILLs every process
it may signal (a service that ignored the TERM), and the restart policy (`--restart unless-stopped`)
starts the container again. It asks `/livez` (loop and workers), not `/healthz`: a camera outage is
not a reason to restart. Failures while PID 1 is younger than `GRACE_S` are not counted (model load,
TensorRT engine build). The count lives in /tmp under PID 1's start time, so a restart starts from 0.
"""

from __future__ import annotations

import os
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

URL = os.environ.get("SMARTSTOCK_LIVEZ_URL", "http://127.0.0.1:8080/livez")
TERM_AFTER = 3
KILL_AFTER = 6
GRACE_S = 300.0


def pid1_start_and_age(proc: Path = Path("/proc")) -> tuple[str, float]:
    """(start time of PID 1 in clock ticks since boot, its age in seconds)."""
    fields = (proc / "1" / "stat").read_text().rsplit(")", 1)[1].split()
    start_ticks = int(fields[19])  # field 22 of stat; fields here start at field 3
    uptime = float((proc / "uptime").read_text().split()[0])
    return str(start_ticks), uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def alive(url: str = URL, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def check(ok: bool, counter: Path, age_s: float) -> tuple[int, int | None]:
    """Update the failure count; (count, signal to send or None). Pure apart from the counter file."""
    if ok:
        counter.unlink(missing_ok=True)
        return 0, None
    if age_s < GRACE_S:
        return 0, None
    try:
        n = int(counter.read_text()) + 1
    except (OSError, ValueError):
        n = 1
    counter.write_text(f"{n}\n")
    if n >= KILL_AFTER:
        return n, signal.SIGKILL
    if n >= TERM_AFTER:
        return n, signal.SIGTERM
    return n, None


def main() -> int:
    start, age = pid1_start_and_age()
    ok = alive()
    n, sig = check(ok, Path("/tmp") / f"smartstock-unhealthy-{start}", age)
    if sig == signal.SIGTERM:
        print(f"unhealthy {n} times in a row: SIGTERM to PID 1", file=sys.stderr)
        os.kill(1, sig)
    elif sig == signal.SIGKILL:
        print(f"unhealthy {n} times in a row: SIGKILL to every process", file=sys.stderr)
        os.kill(-1, sig)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
