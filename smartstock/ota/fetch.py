"""Bring the artifact to `state_dir/models/staging/<sha256>`: size-capped, hashed while streaming, fsynced.

The staging name comes from the signed sha256, never from anything else in a message. A transfer
writes `<sha256>.part`; only bytes that hash right are renamed to `<sha256>`. An https download
resumes a `.part` left by an interrupted transfer with an HTTP Range request.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import logging
import os
import re
import stat
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from smartstock.ota.refusal import (
    FETCH_FAILED, HASH_MISMATCH, INSECURE_URL, MALFORMED, OVERSIZED, TRUNCATED, UpdateRefused,
)
from smartstock.runtime.hashing import file_sha256, update_from_file

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def staging_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "models" / "staging"


def fsync_dir(path: Path) -> None:
    """Make a rename/creation in `path` durable (POSIX: the directory entry needs its own fsync)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_for_write(path: Path, *, append: bool = False) -> BinaryIO:
    """Open a file the device writes from network input without ever following a link planted there.

    A fresh write removes whatever entry has the name (a symlink is removed, not its target) and
    creates the file with O_EXCL | O_NOFOLLOW, so a link planted in between makes the open fail;
    an append (a resumed download) opens with O_NOFOLLOW and insists on a regular file."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    if append:
        fd = os.open(path, flags | os.O_APPEND)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(f"{path} is not a regular file")
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "ab" if append else "wb")


def _regular(path: Path) -> bool:
    """True for a regular file that is not a symlink (lstat: the link itself is judged)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _paths(staging: Path, sha256: str) -> tuple[Path, Path]:
    if not SHA256_RE.match(sha256):
        raise UpdateRefused(MALFORMED, f"sha256 {sha256!r} is not 64 lower-case hex digits")
    staging.mkdir(parents=True, exist_ok=True)
    return staging / f"{sha256}.part", staging / sha256


def _finish(part: Path, final: Path, digest: str, total: int, sha256: str, size: int) -> Path:
    if total < size:
        raise UpdateRefused(TRUNCATED, f"received {total} of {size} bytes")
    if digest != sha256:
        part.unlink(missing_ok=True)
        raise UpdateRefused(HASH_MISMATCH, f"sha256 of the received file is {digest[:16]}..., the signed manifest "
                            f"says {sha256[:16]}...", hint="the artifact was altered or is another release's file")
    fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(part, final)
    fsync_dir(final.parent)
    return final


def existing(staging: Path, sha256: str, size: int, *, name: str | None = None) -> Path | None:
    """A staged file already complete and correct (re-hashed: a file on disk is not trusted blindly).
    `name`: look for that file name instead of `<sha256>` (a release folder); it is not deleted if wrong."""
    final = staging / name if name else _paths(staging, sha256)[1]
    if not _regular(final) or final.stat().st_size != size:
        return None
    if file_sha256(final) != sha256:
        if name is None:
            final.unlink()
        return None
    return final


def stage_bytes(data: bytes, staging: Path, sha256: str, size: int) -> Path:
    """Stage an artifact that arrived whole (the retained MQTT artifact message)."""
    part, final = _paths(staging, sha256)
    if len(data) > size:
        raise UpdateRefused(OVERSIZED, f"artifact message is {len(data)} bytes, the signed manifest says {size}")
    with open_for_write(part) as f:
        f.write(data)
    try:
        return _finish(part, final, hashlib.sha256(data).hexdigest(), len(data), sha256, size)
    except UpdateRefused:
        part.unlink(missing_ok=True)  # a whole message cannot be resumed: keep nothing
        raise


def url_allowed(url: str, allow_http: bool) -> None:
    """https anywhere; plain http only to loopback (tests, a local mirror) or with ota.allow_http."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme != "http":
        raise UpdateRefused(INSECURE_URL, f"artifact URL scheme {parts.scheme!r} is not supported (use https)")
    host = parts.hostname or ""
    loopback = host == "localhost"
    try:
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if not (loopback or allow_http):
        raise UpdateRefused(INSECURE_URL, f"plain http to {host!r} is refused",
                            hint="serve the artifact over https, or set ota.allow_http = true (the sha256 "
                                 "is still enforced, but the transfer is visible on the network)")


def fetch_url(url: str, staging: Path, sha256: str, size: int, *, allow_http: bool = False,
              timeout_s: float = 30.0) -> Path:
    """Download to staging, resuming a `.part` with Range; refuses more or fewer bytes than `size`."""
    url_allowed(url, allow_http)
    part, final = _paths(staging, sha256)
    have = part.stat().st_size if _regular(part) else 0
    if have > size or part.is_symlink():
        part.unlink()
        have = 0
    h = hashlib.sha256()
    if have:
        update_from_file(h, part)
    headers = {"User-Agent": "smartstock-ota/1", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout_s)  # noqa: S310 - scheme checked above
    except urllib.error.HTTPError as e:
        if e.code == 416 and have == size:  # nothing left to send: the .part is complete
            return _finish(part, final, h.hexdigest(), have, sha256, size)
        raise UpdateRefused(FETCH_FAILED, f"GET {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise UpdateRefused(FETCH_FAILED, f"GET {url}: {getattr(e, 'reason', e)}") from None
    with resp:
        if have and resp.status == 206:
            start = _range_start(resp.headers.get("Content-Range", ""))
            if start != have:
                raise UpdateRefused(FETCH_FAILED, f"server resumed at byte {start}, expected {have}")
            mode = "ab"
            logger.info("resuming %s at byte %d of %d", url, have, size)
        else:
            mode, have, h = "wb", 0, hashlib.sha256()
        total = have
        try:
            with open_for_write(part, append=mode == "ab") as f:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > size:
                        f.close()
                        part.unlink(missing_ok=True)
                        raise UpdateRefused(OVERSIZED, f"server sent more than the {size} bytes the manifest says")
                    h.update(chunk)
                    f.write(chunk)
        except (OSError, http.client.HTTPException) as e:
            raise UpdateRefused(TRUNCATED, f"transfer broke after {total} of {size} bytes: {e} "
                                "(the partial file is kept and resumed on the next try)") from None
    return _finish(part, final, h.hexdigest(), total, sha256, size)


def _range_start(content_range: str) -> int | None:
    m = re.match(r"^bytes (\d+)-\d+/(\d+|\*)$", content_range.strip())
    return int(m.group(1)) if m else None
