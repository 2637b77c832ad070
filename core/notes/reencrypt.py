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
from core.checklists.models import ChecklistAnswer, ChecklistRun
from core.checklists.service import _detail_context  # the one definition of each row binding below
from core.clients.models import Client, TherapySession
from core.clients.service import _details_context  # the one definition of that row binding
from core.crypto import DecryptionError, Owner
from core.crypto.models import DataKey
from core.crypto.retire import retire_superseded
from core.links.models import ClientCheckin
from core.links.service import _checkin_context
from core.notes.models import KeyReencryptRun, Note, NoteVersion
from core.notes.service import body_context
from core.ratings.models import Rating
from core.ratings.service import _comment_context
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


def _resealed(store: Store, session: Session, owner: Owner, blob: bytes | None, context: str) -> bytes | None:
    """``blob`` sealed again under ``owner``'s current key; None when it is not ``owner``'s (or empty)."""
    if not blob:
        return None
    try:
        plain = store.keyring.decrypt(session, owner, blob, context)
    except DecryptionError:
        return None  # sealed for another owner (e.g. a session that changed client), or unreadable
    return store.keyring.cipher(session, owner).encrypt(plain, context)


def _rating_comments(store: Store, session: Session, client_id: int) -> int:
    owner = Owner("client", client_id)
    done = 0
    for rating in session.scalars(select(Rating).where(Rating.client_id == client_id, Rating.comment.is_not(None))):
        sealed = _resealed(store, session, owner, rating.comment, _comment_context(rating.session_id, client_id))
        if sealed is not None:
            rating.comment, done = sealed, done + 1
    return done


def _checklist_answers(store: Store, session: Session, client_id: int) -> int:
    owner = Owner("client", client_id)
    done = 0
    rows = session.scalars(
        select(ChecklistAnswer)
        .join(ChecklistRun, ChecklistRun.id == ChecklistAnswer.run_id)
        .join(TherapySession, TherapySession.id == ChecklistRun.session_id)
        .where(TherapySession.client_id == client_id, ChecklistAnswer.detail.is_not(None))
    )
    for answer in rows:
        context = _detail_context(answer.run_id, answer.item_key, client_id)
        sealed = _resealed(store, session, owner, answer.detail, context)
        if sealed is not None:
            answer.detail, done = sealed, done + 1
    return done


def _checkins(store: Store, session: Session, client_id: int) -> int:
    owner = Owner("client", client_id)
    done = 0
    for checkin in session.scalars(select(ClientCheckin).where(ClientCheckin.client_id == client_id)):
        sealed = _resealed(store, session, owner, checkin.answers, _checkin_context(checkin.session_id, client_id))
        if sealed is not None:
            checkin.answers, done = sealed, done + 1
    return done


register_reencryptor("notes", _notes)
register_reencryptor("client_details", _client_details)
register_reencryptor("rating_comments", _rating_comments)
register_reencryptor("checklist_answers", _checklist_answers)
register_reencryptor("client_checkins", _checkins)


@dataclass(frozen=True, slots=True)
class ReencryptResult:
    run_id: int
    resumed: bool
    clients: int
    payloads: int
    # Superseded keys (of earlier runs, past their grace) destroyed at the end of this one.
    retired: int = 0


def retire_superseded_keys(store: Store, actor: Actor, *, now: datetime | None = None) -> int:
    """Destroy every superseded data key that nothing is sealed under any more, audited; returns how many.

    Run by the periodic job ``keys.retire_superseded`` and after every re-encryption run
    (``core.crypto.retire`` says when a key counts as unused).
    """
    from core.store.schema import metadata  # every table of every feature, for the reference scan

    with store.session() as session:
        retired = retire_superseded(session, store.keyring, metadata.tables.values(), now=now)
        if retired:
            record(session, actor, "erase", "keyring", None, detail={"superseded_keys": len(retired)})
    return len(retired)


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
    retired = retire_superseded_keys(store, actor)
    return ReencryptResult(run.id, resumed, clients, payloads, retired)


__all__ = ["ReencryptResult", "reencrypt_clients", "register_reencryptor", "retire_superseded_keys"]
