"""systemd notify protocol (sd_notify) over a unix datagram socket: READY=1, WATCHDOG=1, STOPPING=1.

A few lines of our own instead of a dependency. Does nothing when NOTIFY_SOCKET is not set.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ if env is None else env)
        addr = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if addr.startswith("@"):
            self.address = "\0" + addr[1:]  # abstract namespace
        elif addr.startswith("/"):
            self.address = addr
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_s: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ping_interval_s(self, default: float = 5.0) -> float:
        """How often to send WATCHDOG=1: half the configured watchdog period."""
        return self.watchdog_s / 2 if self.watchdog_s else default

    def send(self, state: str) -> bool:
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect(self.address)
                s.sendall(state.encode())
            return True
        except OSError as e:
            if not self._failed:
                logger.warning("systemd notify to %s failed: %s", self.address.lstrip("\0"), e)
                self._failed = True
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def extend_start(self, seconds: float, status: str = "") -> bool:
        """Ask for `seconds` more before start-up counts as failed (systemd EXTEND_TIMEOUT_USEC)."""
        return self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")
