"""Artifact transfer over a real local HTTP server: streaming sha256, size cap, Range resume, http policy."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from smartstock.ota.fetch import fetch_url, url_allowed
from smartstock.ota.refusal import UpdateRefused


class Server:
    """http.server on loopback serving one blob; `cut_after` closes the connection early once."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.cut_after: int | None = None
        self.extra = b""
        self.requests: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                if self.path != "/model.onnx":
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                outer.requests.append(rng)
                body = outer.blob + outer.extra
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                chunk = body[start:]
                if outer.cut_after is not None:
                    chunk, outer.cut_after = chunk[:outer.cut_after], None
                self.wfile.write(chunk)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/model.onnx"

    def close(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


@pytest.fixture
def blob():
    return bytes(range(256)) * 1024  # 256 KiB


@pytest.fixture
def server(blob):
    s = Server(blob)
    yield s
    s.close()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_download_verifies_and_names_by_hash(server, blob, tmp_path):
    path = fetch_url(server.url, tmp_path, sha(blob), len(blob))
    assert path == tmp_path / sha(blob) and path.read_bytes() == blob
    assert not list(tmp_path.glob("*.part"))


def test_interrupted_download_resumes_with_range(server, blob, tmp_path):
    server.cut_after = 100_000
    with pytest.raises(UpdateRefused) as ei:
        fetch_url(server.url, tmp_path, sha(blob), len(blob))
    assert ei.value.reason == "truncated"
    assert (tmp_path / f"{sha(blob)}.part").stat().st_size == 100_000
    path = fetch_url(server.url, tmp_path, sha(blob), len(blob))
    assert path.read_bytes() == blob and server.requests == [None, "bytes=100000-"]


def test_oversized_download_is_cut_off(server, blob, tmp_path):
    server.extra = b"x" * 10
    with pytest.raises(UpdateRefused) as ei:
        fetch_url(server.url, tmp_path, sha(blob), len(blob))
    assert ei.value.reason == "oversized" and not list(tmp_path.iterdir())


def test_hash_mismatch_is_refused_and_discarded(server, blob, tmp_path):
    with pytest.raises(UpdateRefused) as ei:
        fetch_url(server.url, tmp_path, sha(blob[::-1]), len(blob))
    assert ei.value.reason == "hash_mismatch" and not list(tmp_path.iterdir())


def test_http_errors_are_fetch_failed(server, blob, tmp_path):
    with pytest.raises(UpdateRefused, match="HTTP 404") as ei:
        fetch_url(server.url.replace("model.onnx", "nope.onnx"), tmp_path, sha(blob), len(blob))
    assert ei.value.reason == "fetch_failed"
    server.close()
    with pytest.raises(UpdateRefused) as ei:
        fetch_url(server.url, tmp_path, sha(blob), len(blob), timeout_s=2)
    assert ei.value.reason == "fetch_failed"


@pytest.mark.parametrize("url, allow_http, ok", [
    ("https://models.example.com/a.onnx", False, True),
    ("http://127.0.0.1:8000/a.onnx", False, True),
    ("http://localhost/a.onnx", False, True),
    ("http://[::1]/a.onnx", False, True),
    ("http://models.example.com/a.onnx", False, False),
    ("http://10.0.0.5/a.onnx", False, False),
    ("http://10.0.0.5/a.onnx", True, True),
    ("file:///etc/passwd", True, False),
    ("ftp://x/a.onnx", True, False),
])
def test_url_policy(url, allow_http, ok):
    if ok:
        url_allowed(url, allow_http)
    else:
        with pytest.raises(UpdateRefused, match="insecure_url"):
            url_allowed(url, allow_http)


def test_update_over_https_url_path_end_to_end(tmp_path, store):
    """The updater fetches from the signed URL (loopback http stands in for https) and installs."""
    from tests.fixtures.ota import OtaRig

    rig = OtaRig(tmp_path, store)
    model = rig.model("m2", 2)
    srv = Server(model.read_bytes())
    try:
        env, _ = rig.sign(model, 2, url=srv.url)
        pending = rig.updater.offer(env.to_json())
        rig.updater.install(pending, rig.updater.fetch(pending))
        rig.run_frames(40)
        assert rig.serving_release == 2 and rig.last_state()["status"] == "committed"
    finally:
        srv.close()


@pytest.fixture
def https_server(blob, tls_files):
    import ssl

    s = Server(blob)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls_files.server_cert, tls_files.server_key)
    s.httpd.socket = ctx.wrap_socket(s.httpd.socket, server_side=True)
    s.url = s.url.replace("http://", "https://")
    yield s
    s.close()


def test_https_download_with_a_trusted_ca(https_server, blob, tmp_path, tls_files, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca))
    assert fetch_url(https_server.url, tmp_path, sha(blob), len(blob)).read_bytes() == blob


def test_https_with_an_untrusted_certificate_is_refused(https_server, blob, tmp_path, tls_files, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.other_ca))
    with pytest.raises(UpdateRefused, match="CERTIFICATE_VERIFY_FAILED") as ei:
        fetch_url(https_server.url, tmp_path, sha(blob), len(blob), timeout_s=5)
    assert ei.value.reason == "fetch_failed" and not list(tmp_path.iterdir())
