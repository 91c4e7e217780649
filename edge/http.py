"""Local HTTP: /healthz, /livez, /api/status, /api/recent, /metrics, /snapshots/<name> and the status page.

Read-only, bound to `http.host` (127.0.0.1 by default), on the library's bounded server
(smartstock/httpd.py: read timeout `http.read_timeout_s`, at most `http.max_connections` at once).
The status page (smartstock/web/, written by the web issue) is served at `/` and reads the JSON endpoints.
"""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

from smartstock import httpd

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parents[1] / "smartstock" / "web"
NO_PAGE = (b"<!doctype html><title>SmartStock</title><h1>SmartStock</h1><p>Status page not installed. "
           b"See <a href='/api/status'>/api/status</a>, <a href='/metrics'>/metrics</a>, "
           b"<a href='/healthz'>/healthz</a>.</p>")


class StatusProvider(Protocol):
    def status(self) -> dict[str, Any]: ...
    def health(self) -> tuple[bool, str]: ...
    def alive(self) -> tuple[bool, str]: ...
    def recent(self, limit: int) -> list[dict[str, Any]]: ...
    def metrics_text(self) -> str: ...
    def snapshot_path(self, name: str) -> Path | None: ...


class _Handler(httpd.Handler):
    def get(self, path: str, query: str) -> None:
        p: StatusProvider = self.server.provider  # type: ignore[attr-defined]
        if path in ("/healthz", "/livez"):  # livez: loop and workers only (a camera outage is not a restart)
            ok, reason = p.health() if path == "/healthz" else p.alive()
            self.send_body(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, (reason + "\n").encode(),
                           "text/plain")
        elif path == "/api/status":
            self.send_json(p.status())
        elif path == "/api/recent":
            limit = httpd.int_param(parse_qs(query).get("limit", ["50"])[0], 50, 1, 1000)
            self.send_json({"inspections": p.recent(limit)})
        elif path == "/metrics":
            self.send_body(HTTPStatus.OK, p.metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif path.startswith("/snapshots/"):
            f = p.snapshot_path(path.removeprefix("/snapshots/"))
            if f is None:
                self.send_body(HTTPStatus.NOT_FOUND, b"no such snapshot\n", "text/plain")
            else:
                self.send_body(HTTPStatus.OK, f.read_bytes(), "image/jpeg")
        elif not self.send_static(self.server.web_dir, path):  # type: ignore[attr-defined]
            if path in ("/", "/index.html"):
                self.send_body(HTTPStatus.OK, NO_PAGE, "text/html; charset=utf-8")
            else:
                self.send_body(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")


class HttpServer(httpd.HttpServer):
    """The device's status server, served from a thread of its own; `port` is the real port (useful with port 0)."""

    def __init__(self, host: str, port: int, provider: StatusProvider, web_dir: Path | None = None, *,
                 read_timeout_s: float = 10.0, max_connections: int = 32) -> None:
        super().__init__(host, port, _Handler, read_timeout_s=read_timeout_s, max_connections=max_connections)
        self.server.provider = provider  # type: ignore[attr-defined]
        self.server.web_dir = web_dir or WEB_DIR  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.serve, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        logger.info("HTTP status on http://%s:%d/ (/healthz, /api/status, /metrics)", self.host, self.port)

    def stop(self) -> None:
        self.server.shutdown()
        self.close()
