"""Erasure of a client (GDPR Art. 17) by crypto-shredding: destroy the client's data key.

Everything encrypted under that key — notes, contact details, and whatever other features seal
with ``Owner("client", id)`` (rating comments, checklist answers) — becomes unrecoverable in the
same transaction; no row has to be found and overwritten. The e-mail blind index (an HMAC under
the therapist's key) is cleared too, since it would still confirm a known address. Sessions stay
as bare time slots; the erasure itself is recorded in the audit log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select

from core.audit import Actor, record
from core.clients import UnknownClient, normalise_code
from core.clients.models import Client
from core.crypto import Owner
from core.notes.models import Note
from core.store.db import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ErasureResult:
    client_id: int
    code: str
    notes: int
    # False when the client's key was already destroyed by an earlier erasure.
    erased_now: bool


def erase_client(store: Store, actor: Actor, code: str) -> ErasureResult:
    """Crypto-shred one client of this therapist; an unknown code raises and changes nothing."""
    normalised = normalise_code(code)
    now = datetime.now(UTC)
    with store.session() as session:
        client = (
            session.scalar(select(Client).where(Client.therapist_id == actor.therapist_id, Client.code == normalised))
            if normalised and actor.therapist_id is not None
            else None
        )
        if client is None:
            raise UnknownClient("unknown client code")
        destroyed = store.keyring.destroy(session, Owner("client", client.id))
        client.email_index = None
        client.archived_at = client.archived_at or now
        client.updated_at = now
        notes = session.scalar(select(func.count()).select_from(Note).where(Note.client_id == client.id)) or 0
        record(
            session,
            actor,
            "erase",
            "client",
            client.id,
            client_id=client.id,
            detail={"notes": int(notes), "key_destroyed": destroyed},
        )
        log.info("client %d erased (key destroyed: %s)", client.id, destroyed)
        return ErasureResult(client.id, client.code, int(notes), destroyed)
