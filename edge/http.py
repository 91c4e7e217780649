"""Local HTTP: /healthz, /livez, /api/status, /api/recent, /metrics, /snapshots/<name> and the status page.

stdlib ThreadingHTTPServer, read-only, bound to `http.host` (127.0.0.1 by default). The status page
(smartstock/web/, written by the web issue) is served at `/` and reads the JSON endpoints.
A client that sends nothing for `http.read_timeout_s` is dropped, and at most `http.max_connections`
are served at once (one thread each); more are closed at once, so half-sent requests cannot pile
up threads.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parents[1] / "smartstock" / "web"


class StatusProvider(Protocol):
    def status(self) -> dict[str, Any]: ...
    def health(self) -> tuple[bool, str]: ...
    def alive(self) -> tuple[bool, str]: ...
    def recent(self, limit: int) -> list[dict[str, Any]]: ...
    def metrics_text(self) -> str: ...
    def snapshot_path(self, name: str) -> Path | None: ...


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    server_version = "smartstock"

    def setup(self) -> None:
        self.timeout = self.server.read_timeout_s  # StreamRequestHandler applies it to the socket
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        url = urlsplit(self.path)
        path = url.path
        p = self.server.provider
        try:
            if path in ("/healthz", "/livez"):  # livez: loop and workers only (a camera outage is not a restart)
                ok, reason = p.health() if path == "/healthz" else p.alive()
                self._send(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, (reason + "\n").encode(), "text/plain")
            elif path == "/api/status":
                self._json(p.status())
            elif path == "/api/recent":
                limit = _int(parse_qs(url.query).get("limit", ["50"])[0], 50, 1, 1000)
                self._json({"inspections": p.recent(limit)})
            elif path == "/metrics":
                self._send(HTTPStatus.OK, p.metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8")
            elif path.startswith("/snapshots/"):
                f = p.snapshot_path(path.removeprefix("/snapshots/"))
                if f is None:
                    self._send(HTTPStatus.NOT_FOUND, b"no such snapshot\n", "text/plain")
                else:
                    self._send(HTTPStatus.OK, f.read_bytes(), "image/jpeg")
            else:
                self._static(path)
        except BrokenPipeError:
            pass
        except Exception as e:  # noqa: BLE001 - one bad request must not take the server down
            logger.exception("HTTP %s failed", path)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, f"error: {type(e).__name__}\n".encode(), "text/plain")

    def _static(self, path: str) -> None:
        web = self.server.web_dir.resolve()
        rel = "index.html" if path in ("/", "") else path.lstrip("/")
        target = (web / rel).resolve()
        if not target.is_relative_to(web) or not target.is_file():
            if path in ("/", "/index.html"):
                body = (b"<!doctype html><title>SmartStock</title><h1>SmartStock</h1><p>Status page not installed. "
                        b"See <a href='/api/status'>/api/status</a>, <a href='/metrics'>/metrics</a>, "
                        b"<a href='/healthz'>/healthz</a>.</p>")
                self._send(HTTPStatus.OK, body, "text/html; charset=utf-8")
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
            ctype += "; charset=utf-8"
        self._send(HTTPStatus.OK, target.read_bytes(), ctype)

    def _json(self, obj: Any) -> None:
        self._send(HTTPStatus.OK, json.dumps(obj, default=str).encode(), "application/json")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:
        logger.debug("http: " + fmt, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], provider: StatusProvider, web_dir: Path, *,
                 read_timeout_s: float, max_connections: int) -> None:
        super().__init__(addr, _Handler)
        self.provider = provider
        self.web_dir = web_dir
        self.read_timeout_s = read_timeout_s
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                logger.warning("http: connection limit reached, refused %d connection(s) so far", self.refused)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class HttpServer:
    """Start/stop wrapper; `port` is the real port (useful with port 0)."""

    def __init__(self, host: str, port: int, provider: StatusProvider, web_dir: Path | None = None, *,
                 read_timeout_s: float = 10.0, max_connections: int = 32) -> None:
        try:
            self._server = _Server((host, port), provider, web_dir or WEB_DIR, read_timeout_s=read_timeout_s,
                                   max_connections=max_connections)
        except OSError as e:
            from smartstock.errors import ConfigError
            raise ConfigError(f"http: cannot listen on {host}:{port}: {e.strerror}",
                              hint="choose another http.port (or --http-port; 0 picks a free one)") from None
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        logger.info("HTTP status on http://%s:%d/ (/healthz, /api/status, /metrics)", self.host, self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _int(value: str, default: int, lo: int, hi: int) -> int:
    try:
        return max(lo, min(hi, int(value)))
    except ValueError:
        return default
