"""Short-lived secrets sealed with a therapist's data key (core/crypto keyring), e.g. a sign-in in flight.

What is sealed can only be opened by this service (the key never leaves it) for the same therapist
and the same ``context`` (AES-GCM associated data): a blob copied into another therapist's request
or another purpose does not open.
"""

from __future__ import annotations

from core.crypto import DecryptionError, Owner
from core.store import Store

__all__ = ["open_for_therapist", "seal_for_therapist"]


def seal_for_therapist(store: Store, therapist_id: int, data: bytes, context: str) -> bytes:
    """``data`` encrypted under the therapist's data key, bound to ``context``."""
    with store.session() as session:
        return store.keyring.cipher(session, Owner("therapist", therapist_id)).encrypt(data, context)


def open_for_therapist(store: Store, therapist_id: int, blob: bytes, context: str) -> bytes | None:
    """What :func:`seal_for_therapist` sealed, or None when the blob is not this therapist's for ``context``."""
    try:
        with store.session() as session:
            return store.keyring.decrypt(session, Owner("therapist", therapist_id), blob, context)
    except (DecryptionError, ValueError):
        return None
