"""The signed update envelope that travels on `{base}/model/desired`.

    {"v": 1, "kind": "defect-classifier", "key_id": "plant-2026",
     "manifest": "<base64 of the exact release-manifest bytes>",
     "sig": "<base64 Ed25519 signature over exactly those bytes>"}

The signature covers the manifest bytes as sent, not a re-serialisation, so there is no
canonical-JSON ambiguity: the device verifies the bytes first and only then parses them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from smartstock.ota.refusal import MALFORMED, TOO_LARGE, UpdateRefused

ENVELOPE_VERSION = 1
DEFAULT_MAX_ENVELOPE_BYTES = 4 * 1024 * 1024  # golden samples make manifests a few hundred KB at most
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KINDS = ("defect-classifier", "demand-forecaster")
SIGNATURE_BYTES = 64
MAX_NUMBER_CHARS = 20  # the only number in an envelope is its version


@dataclass(frozen=True)
class Envelope:
    kind: str
    key_id: str
    manifest_bytes: bytes
    signature: bytes

    def to_json(self) -> bytes:
        return json.dumps({
            "v": ENVELOPE_VERSION,
            "kind": self.kind,
            "key_id": self.key_id,
            "manifest": base64.b64encode(self.manifest_bytes).decode("ascii"),
            "sig": base64.b64encode(self.signature).decode("ascii"),
        }, indent=2).encode("utf-8") + b"\n"


def seal(manifest_bytes: bytes, kind: str, key_id: str, private_key: Ed25519PrivateKey) -> Envelope:
    """Sign `manifest_bytes` as they are and wrap them (technician side)."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not KEY_ID_PATTERN.match(key_id):
        raise ValueError(f"key id {key_id!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return Envelope(kind, key_id, manifest_bytes, private_key.sign(manifest_bytes))


def _b64(obj: dict[str, Any], field: str) -> bytes:
    value = obj.get(field)
    if not isinstance(value, str) or not value:
        raise UpdateRefused(MALFORMED, f"envelope field {field!r} must be a non-empty base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise UpdateRefused(MALFORMED, f"envelope field {field!r} is not valid base64") from None


def precheck(raw: bytes, *, max_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES) -> None:
    """Refuse, before any JSON parsing, what cannot be an envelope: over the size cap, or nested.

    Cheap (two C-speed byte counts), so it can run on the MQTT thread: an envelope is one flat JSON
    object whose values are a small integer and strings without brackets (kind, key id, base64), so
    a second `{` or any `[` means junk, and a nesting bomb never reaches the recursive parser."""
    if len(raw) > max_bytes:
        raise UpdateRefused(TOO_LARGE, f"envelope is {len(raw)} bytes, the limit is {max_bytes}",
                            hint="an envelope carries only the manifest; the model travels separately")
    if raw.count(b"{") > 1 or b"[" in raw:
        raise UpdateRefused(MALFORMED, "envelope must be one flat JSON object (it contains nested objects or arrays)",
                            hint="publish the file written by `smartstock ota sign` unchanged")


def _bounded(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise ValueError(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
        return convert(text)
    return parse


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not valid JSON")


def parse_envelope(raw: bytes, *, max_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES) -> Envelope:
    """Parse and shape-check an envelope; nothing here is trusted yet (the signature is not checked)."""
    precheck(raw, max_bytes=max_bytes)
    try:  # numbers are checked by length before conversion: a 5000-digit integer costs nothing
        obj = json.loads(raw.decode("utf-8"), parse_int=_bounded(int), parse_float=_bounded(float),
                         parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise UpdateRefused(MALFORMED, f"envelope cannot be read as UTF-8 JSON: {e}",
                            hint="publish the file written by `smartstock ota sign` unchanged") from None
    if not isinstance(obj, dict):
        raise UpdateRefused(MALFORMED, "envelope must be a JSON object")
    unknown = set(obj) - {"v", "kind", "key_id", "manifest", "sig"}
    if unknown:
        raise UpdateRefused(MALFORMED, f"envelope has unknown field(s) {sorted(unknown)}")
    if obj.get("v") != ENVELOPE_VERSION:
        raise UpdateRefused(MALFORMED, f"envelope version {obj.get('v')!r} is not supported (expected {ENVELOPE_VERSION})")
    kind = obj.get("kind")
    if kind not in KINDS:
        raise UpdateRefused(MALFORMED, f"envelope kind {kind!r} is not one of {', '.join(KINDS)}")
    key_id = obj.get("key_id")
    if not isinstance(key_id, str) or not KEY_ID_PATTERN.match(key_id):
        raise UpdateRefused(MALFORMED, f"envelope key_id {key_id!r} is not a valid key id")
    manifest_bytes = _b64(obj, "manifest")
    signature = _b64(obj, "sig")
    if len(signature) != SIGNATURE_BYTES:
        raise UpdateRefused(MALFORMED, f"signature is {len(signature)} bytes; Ed25519 signatures are {SIGNATURE_BYTES}")
    return Envelope(kind, key_id, manifest_bytes, signature)
