"""Versioned master keys: where they come from and how a new version is added.

A master key only wraps data keys (envelope encryption); it never encrypts payloads directly, so
rotating it re-wraps a few small rows and leaves every ciphertext untouched.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

KEY_BYTES = 32  # AES-256


class MasterKeyError(Exception):
    """The master key material is missing, malformed or does not match the data."""


def _decode_key(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(
            f"{where}: a master key must be base64 (generate one with 'alliance keys generate')"
        ) from None
    if len(raw) != KEY_BYTES:
        raise MasterKeyError(f"{where}: a master key must be {KEY_BYTES} bytes, got {len(raw)}")
    return raw


def generate_key_text() -> str:
    """A new random master key, base64-encoded."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


@dataclass
class MasterKeys:
    """All master key versions still in use; ``active`` wraps new data keys."""

    keys: dict[int, bytes] = field(default_factory=dict)
    active: int = 1
    source: str = "memory"

    def __post_init__(self) -> None:
        if self.keys and self.active not in self.keys:
            raise MasterKeyError(f"{self.source}: the active master key version {self.active} is not present")

    @property
    def active_key(self) -> bytes:
        return self.keys[self.active]

    def fingerprint(self) -> str:
        """A short non-secret label of the active key, safe to print."""
        import hashlib

        return hashlib.sha256(b"alliance-fp" + self.active_key).hexdigest()[:12]

    @classmethod
    def from_env_value(cls, value: str) -> MasterKeys:
        """Parse ``ALLIANCE_MASTER_KEY``: one base64 key (version 1) or ``2:<b64>,1:<b64>``.

        With several versions the highest one is active; older ones keep decrypting until retired.
        """
        where = "ALLIANCE_MASTER_KEY"
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts:
            raise MasterKeyError(f"{where} is empty")
        if len(parts) == 1 and ":" not in parts[0]:
            return cls({1: _decode_key(parts[0], where)}, 1, where)
        keys: dict[int, bytes] = {}
        for part in parts:
            version_text, sep, key_text = part.partition(":")
            if not sep or not version_text.isdigit() or int(version_text) < 1:
                raise MasterKeyError(f"{where}: expected VERSION:BASE64 pairs separated by commas")
            keys[int(version_text)] = _decode_key(key_text, where)
        return cls(keys, max(keys), where)

    @classmethod
    def load_file(cls, path: Path) -> MasterKeys:
        where = str(path)
        try:
            data = json.loads(path.read_text())
            keys = {int(v): _decode_key(k, where) for v, k in data["keys"].items()}
            active = int(data["active"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            if isinstance(exc, MasterKeyError):
                raise
            raise MasterKeyError(f"{where}: unreadable master key file ({type(exc).__name__})") from None
        return cls(keys, active, where)

    @classmethod
    def create_file(cls, path: Path) -> MasterKeys:
        """Create a key file with one fresh key, readable by its owner only (mode 0600)."""
        keys = cls({1: base64.b64decode(generate_key_text())}, 1, str(path))
        keys.save(path)
        return keys

    def save(self, path: Path) -> None:
        """Write the key file atomically with mode 0600 (never world- or group-readable)."""
        payload = json.dumps(
            {"active": self.active, "keys": {str(v): base64.b64encode(k).decode() for v, k in self.keys.items()}},
            indent=2,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(payload)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def with_new_version(self) -> MasterKeys:
        """A copy with one more version, which becomes active."""
        version = max(self.keys, default=0) + 1
        keys = dict(self.keys)
        keys[version] = base64.b64decode(generate_key_text())
        return MasterKeys(keys, version, self.source)

    def without_version(self, version: int) -> MasterKeys:
        if version == self.active:
            raise MasterKeyError(f"version {version} is the active master key; rotate before retiring it")
        keys = {v: k for v, k in self.keys.items() if v != version}
        return MasterKeys(keys, self.active, self.source)
