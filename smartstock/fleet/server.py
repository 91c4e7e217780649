"""`smartstock fleet serve`: the plant page (smartstock/fleet/web/) and `/api/fleet` over a live FleetWatch.

Read-only, on the library's bounded HTTP server (smartstock/httpd.py). The rows are built afresh from
the watch's latest messages, so a device turns stale on the page without a new message, but at most
once per `VIEW_MAX_AGE_S`: many open pages polling a large fleet share one build (200 devices take
about 30 ms to build on a 2-core machine, 10,000 would take seconds).
"""

from __future__ import annotations

import logging
import threading
import time
from http import HTTPStatus
from typing import Any
from pathlib import Path

from smartstock import httpd
from smartstock.fleet.watch import FleetWatch

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
DEVICE_WEB_DIR = Path(__file__).resolve().parents[1] / "web"
SHARED = ("/style.css", "/common.js")  # the device status page's look and helpers
VIEW_MAX_AGE_S = 1.0


class _Views:
    """The last built view's JSON, rebuilt when older than VIEW_MAX_AGE_S (one build at a time)."""

    def __init__(self, watch: FleetWatch, stale_minutes: float) -> None:
        self.watch, self.stale_minutes = watch, stale_minutes
        self._lock = threading.Lock()
        self._at, self._json = -float("inf"), None

    def json(self) -> Any:
        with self._lock:
            if time.monotonic() - self._at >= VIEW_MAX_AGE_S:
                self._json, self._at = self.watch.view(self.stale_minutes).to_json(), time.monotonic()
            return self._json


class _Handler(httpd.Handler):
    def get(self, path: str, query: str) -> None:
        srv = self.server
        if path == "/api/fleet":
            self.send_json(srv.views.json())  # type: ignore[attr-defined]
        elif path == "/healthz":
            ok = srv.watch.client.connected  # type: ignore[attr-defined]
            self.send_body(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE,
                           b"ok\n" if ok else b"broker disconnected\n", "text/plain")
        elif not (self.send_static(WEB_DIR, path) or path in SHARED and self.send_static(DEVICE_WEB_DIR, path)):
            self.send_body(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")


class FleetServer(httpd.HttpServer):
    """The plant page for one watch; `port` is the real port (0 picks a free one)."""

    def __init__(self, watch: FleetWatch, host: str = "127.0.0.1", port: int = 8090, *,
                 stale_minutes: float = 10.0) -> None:
        super().__init__(host, port, _Handler, port_option="--http-port")
        self.server.watch = watch  # type: ignore[attr-defined]
        self.server.views = _Views(watch, stale_minutes)  # type: ignore[attr-defined]

    def serve(self) -> None:
        logger.info("fleet page on http://%s:%d/ (/api/fleet)", self.host, self.port)
        super().serve()
