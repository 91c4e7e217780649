"""Ed25519 signing keys (technician side) and the device's read-only keyring of trusted public keys.

A key id names a key: the private key is `<key_id>.key` (PEM, mode 0600, never leaves the
technician's machine) and the public key `<key_id>.pub`. The device trusts exactly the `.pub`
files in its keyring directory; the key id in an envelope only selects which one to try, so a
forged key id gains nothing.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from smartstock.errors import ConfigError
from smartstock.ota.envelope import KEY_ID_PATTERN
from smartstock.ota.refusal import UNSAFE_KEY, UpdateRefused

logger = logging.getLogger(__name__)


def _check_key_id(key_id: str) -> None:
    if not KEY_ID_PATTERN.match(key_id):
        raise ConfigError(f"key id {key_id!r} is not valid",
                          hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")


def generate_keypair(out_dir: Path, key_id: str) -> tuple[Path, Path]:
    """Write `<key_id>.key` (0600) and `<key_id>.pub`; refuses to overwrite an existing key."""
    _check_key_id(key_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = out_dir / f"{key_id}.key", out_dir / f"{key_id}.pub"
    for p in (priv_path, pub_path):
        if p.exists():
            raise ConfigError(f"{p}: already exists; refusing to overwrite a signing key",
                              hint="choose another --key-id or move the old key away first")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(priv_path, 0o600)  # umask cannot widen it, but be explicit
    pub_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv_path, pub_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The technician's signing key; a key readable by others is refused (it may have leaked)."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the signing key: {e.strerror}",
                          hint="pass the .key file written by `smartstock ota keygen`") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path}: private key is accessible by group/others (mode {stat.S_IMODE(mode):o})",
                          hint=f"chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path}: not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 key", hint="create one with `smartstock ota keygen`")
    return key


def key_file_problem(path: Path) -> str | None:
    """Why a keyring file must not be trusted (a symlink, not a regular file, writable by group or
    others: whoever can change it can install models), or None."""
    try:
        st = path.lstat()
    except OSError as e:
        return f"cannot read it: {e.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link (copy the key file itself into the keyring)"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by group/others (mode {stat.S_IMODE(st.st_mode):o}; chmod 644 {path})"
    return None


def _read_trusted(path: Path) -> bytes:
    """A keyring file's bytes, opened without following a link and re-checked on the open file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise OSError(errno.EPERM, "not a regular file that only its owner can write")
        return f.read(64 * 1024)


def load_public_key(path: Path, *, trusted: bool = False) -> Ed25519PublicKey:
    """A PEM public key; `trusted`: a keyring file, refused when it is a link or writable by others."""
    try:
        key = serialization.load_pem_public_key(_read_trusted(path) if trusted else path.read_bytes())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read public key: {e.strerror}") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not a PEM public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 public key")
    return key


class Keyring:
    """Trusted public keys by key id, read from `<dir>/<key_id>.pub` (read on demand, cached)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ConfigError(f"ota.keyring_dir {self.directory}: not a directory",
                              hint="create it and copy the technicians' <key_id>.pub files into it")
        mode = self.directory.stat().st_mode
        if mode & stat.S_IWOTH:
            raise ConfigError(f"ota.keyring_dir {self.directory}: writable by everyone (mode {stat.S_IMODE(mode):o})",
                              hint=f"chmod o-w {self.directory}; anyone who can add a key can install models")
        if os.access(self.directory, os.W_OK) and os.geteuid() != 0:
            logger.warning("keyring %s is writable by the service user; make it read-only (root-owned, 0755)",
                           self.directory)
        self._cache: dict[str, Ed25519PublicKey] = {}
        for p in sorted(self.directory.glob("*.pub")):
            problem = key_file_problem(p)
            if problem:
                logger.error("keyring %s: %s %s; updates signed with it are refused", self.directory, p.name, problem)

    def key_ids(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.pub") if KEY_ID_PATTERN.match(p.stem))

    def get(self, key_id: str) -> Ed25519PublicKey | None:
        """The trusted key with this id, or None. The id is pattern-checked, so it cannot walk out of the dir."""
        if not KEY_ID_PATTERN.match(key_id):
            return None
        path = self.directory / f"{key_id}.pub"
        if not os.path.lexists(path):
            return None
        problem = key_file_problem(path)  # checked on every use: a chmod after start-up counts too
        if problem:
            raise UpdateRefused(UNSAFE_KEY, f"keyring file {path} {problem}",
                                hint="keyring files must be regular files only their owner can write")
        if key_id not in self._cache:
            self._cache[key_id] = load_public_key(path, trusted=True)
        return self._cache[key_id]

    @staticmethod
    def verify(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
        try:
            key.verify(signature, data)
            return True
        except InvalidSignature:
            return False
