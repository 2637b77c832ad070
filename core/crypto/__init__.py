"""Secrets at rest: versioned master keys wrapping per-owner data keys (AES-256-GCM)."""

from core.crypto.keyring import DecryptionError, KeyDestroyed, Keyring, Owner, OwnerCipher
from core.crypto.masterkey import MasterKeyError, MasterKeys, generate_key_text

__all__ = [
    "DecryptionError",
    "KeyDestroyed",
    "Keyring",
    "MasterKeyError",
    "MasterKeys",
    "Owner",
    "OwnerCipher",
    "generate_key_text",
]
