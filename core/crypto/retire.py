"""Retiring superseded data keys: destroy an old key once nothing is sealed under it any more.

``alliance keys reencrypt`` gives each client a new data key and re-encrypts the client's payloads;
the old key stays (superseded) so that anything not yet re-encrypted keeps decrypting. Keeping it
forever would keep the risk the re-key was meant to end, so a key is destroyed (its wrapped bytes
set to NULL, like an erasure) once:

- it has been superseded for at least ``grace`` (longer than
  :data:`core.crypto.keyring.OWNER_CACHE_SECONDS`, after which no process still seals with it), and
- no ciphertext names it: every binary column of every table is scanned for the key id in the
  ciphertext header (``FORMAT`` byte + 16-byte key id), and no live data key is wrapped under it.

A key that is still referenced stays and is looked at again on the next run; nothing readable is
ever made unreadable. The periodic job ``keys.retire_superseded`` and every re-encryption run call this.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import LargeBinary, Table, func, select
from sqlalchemy.orm import Session

from core.crypto.keyring import FORMAT, KID_BYTES, OWNER_CACHE_SECONDS, Keyring
from core.crypto.models import DataKey

log = logging.getLogger(__name__)

SUPERSEDED_GRACE = timedelta(hours=1)
if SUPERSEDED_GRACE.total_seconds() <= 2 * OWNER_CACHE_SECONDS:
    raise ImportError("the retirement grace must outlast the keyring's owner cache")
_KEYRING_TABLES = frozenset({"data_keys", "master_key_checks"})  # wrapped keys, not payloads


def _referenced(session: Session, tables: Iterable[Table]) -> set[str]:
    """Key ids (hex) named by a ciphertext header anywhere in ``tables``."""
    found: set[str] = set()
    for table in tables:
        if table.name in _KEYRING_TABLES:
            continue
        for column in table.columns:
            if not isinstance(column.type, LargeBinary):
                continue
            kid = func.substr(column, 2, KID_BYTES)
            rows = session.execute(
                select(kid).where(func.substr(column, 1, 1) == FORMAT, column.is_not(None)).distinct()
            )
            found.update(bytes(k).hex() for (k,) in rows if k is not None)
    return found


def retire_superseded(
    session: Session,
    keyring: Keyring,
    tables: Iterable[Table],
    *,
    now: datetime | None = None,
    grace: timedelta = SUPERSEDED_GRACE,
) -> list[str]:
    """Destroy the superseded keys nothing references any more (see the module docstring); returns
    their key ids."""
    cutoff = (now or datetime.now(UTC)) - grace
    candidates = session.scalars(
        select(DataKey.kid).where(
            DataKey.superseded_at.is_not(None), DataKey.superseded_at <= cutoff, DataKey.wrapped.is_not(None)
        )
    ).all()
    if not candidates:
        return []
    # Locks the candidates (PostgreSQL) so a concurrent re-key or erasure waits for this decision.
    session.execute(select(DataKey.kid).where(DataKey.kid.in_(candidates)).with_for_update()).all()
    in_use = _referenced(session, tables)
    in_use.update(
        session.scalars(
            select(DataKey.parent_kid).where(DataKey.parent_kid.in_(candidates), DataKey.wrapped.is_not(None))
        )
    )
    retired = [kid for kid in candidates if kid not in in_use]
    for kid in retired:
        keyring.destroy_superseded(session, kid)
    session.flush()
    if retired or candidates:
        log.info("%d superseded data key(s) destroyed, %d still in use", len(retired), len(candidates) - len(retired))
    return retired


__all__ = ["SUPERSEDED_GRACE", "retire_superseded"]
