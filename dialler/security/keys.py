"""The key ring: AES-256 keys by id, the newest encrypting, every one decrypting.

Keys come from settings (``DIALLER_PAYLOAD_KEYS``: comma-separated ``key-id:base64-of-32-bytes``, the
first one encrypts). Rotation: put a new key first and keep the old ones for as long as any Temporal
history (retention period) or queued change event may still carry them; then drop them.

KMS hook: anything implementing :class:`KeyProvider` can replace the settings keys — e.g. a provider
that, at start-up, asks AWS KMS to decrypt data keys stored (encrypted) in Secrets Manager, and returns
them here. The ring is built once per process (``key_ring(settings)``); the codec never calls the KMS
per payload, so a KMS outage cannot stall workflow tasks.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12

# The development key: published in this repository, so production refuses it (dialler.config).
DEVELOPMENT_KEY_ID = "dev-1"
DEVELOPMENT_KEY_B64 = "cm1jLWRpYWxsZXItZGV2ZWxvcG1lbnQta2V5LTMyYiE="
DEVELOPMENT_KEYS = f"{DEVELOPMENT_KEY_ID}:{DEVELOPMENT_KEY_B64}"


class UnknownKey(Exception):
    """A ciphertext names a key this process does not hold (rotated out too early, or another
    environment's data): say which, never guess."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no decryption key with id {key_id!r} in this process's key ring (DIALLER_PAYLOAD_KEYS)")
        self.key_id = key_id


class KeyProvider(Protocol):
    """Where keys come from. The first key encrypts; all decrypt. Implement this for a KMS."""

    def keys(self) -> list[tuple[str, bytes]]: ...


@dataclass(frozen=True)
class SettingsKeyProvider:
    """Keys written in settings: ``id:base64,id:base64`` (first encrypts)."""

    spec: str

    def keys(self) -> list[tuple[str, bytes]]:
        return parse_keys(self.spec)


def parse_keys(spec: str) -> list[tuple[str, bytes]]:
    """``id:base64,...`` to ``[(id, key)]``; a malformed entry, a key not 32 bytes or a repeated id is
    a ``ValueError`` naming the entry's id (never the key)."""
    keys: list[tuple[str, bytes]] = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        key_id, sep, b64 = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not key_id:
            raise ValueError("each payload key is 'key-id:base64-of-32-bytes'")
        try:
            key = base64.b64decode(b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"payload key {key_id!r} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"payload key {key_id!r} must be {KEY_BYTES} bytes (AES-256), not {len(key)}")
        if any(k == key_id for k, _ in keys):
            raise ValueError(f"payload key id {key_id!r} appears twice")
        keys.append((key_id, key))
    if not keys:
        raise ValueError("at least one payload key is needed")
    return keys


class KeyRing:
    """AES-256-GCM with the ring's keys. ``aad`` binds a ciphertext to its use (the key id, plus the
    caller's context), so a ciphertext cannot be moved to another field unnoticed."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self.current_id = keys[0][0]
        self._ciphers: Mapping[str, AESGCM] = {key_id: AESGCM(key) for key_id, key in keys}

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> tuple[str, bytes]:
        """``(key id, nonce + ciphertext)`` with the current key and a fresh random nonce."""
        nonce = os.urandom(NONCE_BYTES)
        cipher = self._ciphers[self.current_id]
        return self.current_id, nonce + cipher.encrypt(nonce, plaintext, self.current_id.encode() + b"|" + aad)

    def decrypt(self, key_id: str, blob: bytes, aad: bytes = b"") -> bytes:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKey(key_id)
        return cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], key_id.encode() + b"|" + aad)


def key_ring(provider: KeyProvider) -> KeyRing:
    return KeyRing(provider.keys())
