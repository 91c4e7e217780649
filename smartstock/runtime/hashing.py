"""File hashing: the one sha256 used by export, manifest checks, OTA signing and OTA staging."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def update_from_file(h: "hashlib._Hash", path: Path) -> int:
    """Feed a file into a running hash in 1 MiB chunks; returns the bytes read."""
    n = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
            n += len(chunk)
    return n


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, streamed (model files can be larger than a device likes to hold twice)."""
    h = hashlib.sha256()
    update_from_file(h, Path(path))
    return h.hexdigest()
