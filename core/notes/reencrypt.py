"""``alliance keys reencrypt``: new data keys for every client, payloads re-encrypted under them.

``alliance keys rotate`` re-wraps data keys under a new master key and leaves payloads alone;
this goes one level further, for when a data key itself may have leaked: each client gets a new
data key and everything sealed under the old one is decrypted and sealed again under the new one.

One client per transaction (new key + all its payloads): a crash loses at most the client in
flight, whose transaction rolls back with the old key still current. The run's start is stored;
a client whose current key is younger than that start is done, so running the command again
resumes where the crash happened. The old keys stay (superseded) and keep decrypting anything a
feature did not register here, so nothing becomes unreadable.

Features that seal payloads with a client's key register a re-encryptor:
``register_reencryptor(name, fn)`` with ``fn(store, session, client_id) -> rows re-encrypted``;
inside ``fn``, ``store.keyring.cipher(session, Owner("client", client_id))`` is the new key and
``store.keyring.decrypt`` still opens the old ciphertexts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import Actor, record
from core.clients.models import Client
from core.clients.service import _details_context  # the one definition of that row binding
from core.crypto import Owner
from core.crypto.models import DataKey
from core.notes.models import KeyReencryptRun, Note, NoteVersion
from core.notes.service import body_context
from core.store.db import Store

log = logging.getLogger(__name__)

Reencryptor = Callable[[Store, Session, int], int]
_REENCRYPTORS: dict[str, Reencryptor] = {}


def register_reencryptor(name: str, fn: Reencryptor) -> None:
    """Re-encrypt a feature's client payloads under the client's new key (see the module docstring)."""
    if name in _REENCRYPTORS and _REENCRYPTORS[name] is not fn:
        raise ValueError(f"a re-encryptor named {name!r} is already registered")
    _REENCRYPTORS[name] = fn


def _notes(store: Store, session: Session, client_id: int) -> int:
    owner = Owner("client", client_id)
    cipher = store.keyring.cipher(session, owner)
    rows = session.execute(
        select(NoteVersion, Note).join(Note, Note.id == NoteVersion.note_id).where(Note.client_id == client_id)
    ).all()
    for version, note in rows:
        context = body_context(note.author_id, note.client_id, note.session_id, note.id, version.version)
        version.body = cipher.encrypt(store.keyring.decrypt(session, owner, version.body, context), context)
    return len(rows)


def _client_details(store: Store, session: Session, client_id: int) -> int:
    owner = Owner("client", client_id)
    client = session.get_one(Client, client_id)
    if not client.details:
        return 0
    context = _details_context(client)
    plain = store.keyring.decrypt(session, owner, client.details, context)
    client.details = store.keyring.cipher(session, owner).encrypt(plain, context)
    return 1


register_reencryptor("notes", _notes)
register_reencryptor("client_details", _client_details)


@dataclass(frozen=True, slots=True)
class ReencryptResult:
    run_id: int
    resumed: bool
    clients: int
    payloads: int


def _open_run(store: Store) -> tuple[KeyReencryptRun, bool]:
    with store.session() as session:
        run = session.scalar(
            select(KeyReencryptRun).where(KeyReencryptRun.finished_at.is_(None)).order_by(KeyReencryptRun.id)
        )
        if run is not None:
            return run, True
        run = KeyReencryptRun(started_at=datetime.now(UTC), clients_done=0)
        session.add(run)
        session.flush()
        return run, False


def _pending(store: Store, started_at: datetime) -> list[int]:
    with store.session() as session:
        return list(
            session.scalars(
                select(DataKey.owner_id)
                .where(
                    DataKey.owner_kind == "client",
                    DataKey.superseded_at.is_(None),
                    DataKey.wrapped.is_not(None),
                    DataKey.created_at < started_at,
                )
                .order_by(DataKey.owner_id)
            )
        )


def reencrypt_clients(
    store: Store, actor: Actor, *, progress: Callable[[int, int], None] | None = None
) -> ReencryptResult:
    """Re-key every client with a live key older than the run; resumable (see the module docstring)."""
    run, resumed = _open_run(store)
    pending = _pending(store, run.started_at)
    payloads = 0
    for done, client_id in enumerate(pending, start=1):
        with store.session() as session:
            current = session.scalar(
                select(DataKey).where(
                    DataKey.owner_kind == "client", DataKey.owner_id == client_id, DataKey.superseded_at.is_(None)
                )
            )
            if current is None or current.wrapped is None or current.created_at >= run.started_at:
                continue  # erased meanwhile, or done by a concurrent run
            store.keyring.rekey(session, Owner("client", client_id))
            payloads += sum(fn(store, session, client_id) for fn in _REENCRYPTORS.values())
            session.get_one(KeyReencryptRun, run.id).clients_done += 1
        log.info("client %d re-encrypted under a new data key", client_id)
        if progress is not None:
            progress(done, len(pending))
    with store.session() as session:
        finished = session.get_one(KeyReencryptRun, run.id)
        finished.finished_at = datetime.now(UTC)
        record(
            session,
            actor,
            "reencrypt",
            "keyring",
            run.id,
            detail={"clients": finished.clients_done, "resumed": resumed},
        )
        clients = finished.clients_done
    return ReencryptResult(run.id, resumed, clients, payloads)


__all__ = ["ReencryptResult", "reencrypt_clients", "register_reencryptor"]
