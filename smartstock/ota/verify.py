"""Open an envelope: size and shape, key lookup, Ed25519 signature, then parse the signed manifest.

Nothing inside the manifest is looked at before its signature is verified.
"""

from __future__ import annotations

import logging

from smartstock.ota.envelope import DEFAULT_MAX_ENVELOPE_BYTES, Envelope, parse_envelope
from smartstock.ota.keys import Keyring
from smartstock.ota.refusal import BAD_SIGNATURE, KIND_MISMATCH, UNKNOWN_KEY, UpdateRefused
from smartstock.ota.release import ReleaseManifest, parse_release

logger = logging.getLogger(__name__)


def open_envelope(raw: bytes, keyring: Keyring, *,
                  max_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES) -> tuple[Envelope, ReleaseManifest]:
    """The envelope and its verified release manifest, or UpdateRefused with the reason."""
    env = parse_envelope(raw, max_bytes=max_bytes)
    key = keyring.get(env.key_id)
    if key is None:
        raise UpdateRefused(UNKNOWN_KEY, f"key id {env.key_id!r} is not in the keyring {keyring.directory}",
                            hint=f"copy {env.key_id}.pub into the device's ota.keyring_dir if that key is trusted")
    if not Keyring.verify(key, env.signature, env.manifest_bytes):
        raise UpdateRefused(BAD_SIGNATURE, f"signature does not match the manifest for key {env.key_id!r} "
                            "(manifest altered after signing, or signed with another key)",
                            hint="re-sign with `smartstock ota sign` and publish the envelope unchanged")
    manifest = parse_release(env.manifest_bytes)
    if manifest.kind != env.kind:
        raise UpdateRefused(KIND_MISMATCH, f"envelope says {env.kind!r} but the signed manifest is {manifest.kind!r}")
    return env, manifest
