"""A small read-only HTTP server for local pages: the device's status page (edge/http.py) and the
plant's fleet page (smartstock/fleet/server.py) share it.

stdlib ThreadingHTTPServer. A client that sends nothing for `read_timeout_s` is dropped, and at most
`max_connections` are served at once (one thread each); more are closed at once, so half-sent
requests cannot pile up threads. Static files are served from one folder only (no path escapes it).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from smartstock.errors import ConfigError

logger = logging.getLogger(__name__)


class Handler(BaseHTTPRequestHandler):
    """Base for a GET-only handler: subclasses implement `get(path, query)` with `send_json` / `send_static`."""

    server: "BoundedServer"
    server_version = "smartstock"

    def setup(self) -> None:
        self.timeout = self.server.read_timeout_s  # StreamRequestHandler applies it to the socket
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        url = urlsplit(self.path)
        try:
            self.get(url.path, url.query)
        except BrokenPipeError:
            pass
        except Exception as e:  # noqa: BLE001 - one bad request must not take the server down
            logger.exception("HTTP %s failed", url.path)
            self.send_body(HTTPStatus.INTERNAL_SERVER_ERROR, f"error: {type(e).__name__}\n".encode(), "text/plain")

    def get(self, path: str, query: str) -> None:
        raise NotImplementedError

    def send_static(self, web_dir: Path, path: str) -> bool:
        """Serve `path` from `web_dir` (`/` is index.html); False when there is no such file there."""
        web = web_dir.resolve()
        rel = "index.html" if path in ("/", "") else path.lstrip("/")
        target = (web / rel).resolve()
        if not target.is_relative_to(web) or not target.is_file():
            return False
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
            ctype += "; charset=utf-8"
        self.send_body(HTTPStatus.OK, target.read_bytes(), ctype)
        return True

    def send_json(self, obj: Any) -> None:
        self.send_body(HTTPStatus.OK, json.dumps(obj, default=str).encode(), "application/json")

    def send_body(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:
        logger.debug("http: " + fmt, *args)


class BoundedServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], handler: type[Handler], *, read_timeout_s: float,
                 max_connections: int) -> None:
        super().__init__(addr, handler)
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
    """Bind at construction (a taken port is a ConfigError), then `serve()` until `close()`; `port` is the
    real port (useful with port 0). The library starts no thread: `serve()` blocks its caller (the edge
    service runs it in a thread of its own). Attributes the handler needs (`provider`, `watch`, ...) are
    set on `self.server` before serving."""

    def __init__(self, host: str, port: int, handler: type[Handler], *, read_timeout_s: float = 10.0,
                 max_connections: int = 32, port_option: str = "http.port (or --http-port)") -> None:
        try:
            self.server = BoundedServer((host, port), handler, read_timeout_s=read_timeout_s,
                                        max_connections=max_connections)
        except OSError as e:
            raise ConfigError(f"http: cannot listen on {host}:{port}: {e.strerror}",
                              hint=f"choose another {port_option}; 0 picks a free one") from None
        self.host = host
        self.port = int(self.server.server_address[1])

    def serve(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        self.server.server_close()


def int_param(value: str, default: int, lo: int, hi: int) -> int:
    """A query parameter as an int clamped to [lo, hi]; `default` when it is not a number."""
    try:
        return max(lo, min(hi, int(value)))
    except ValueError:
        return default
