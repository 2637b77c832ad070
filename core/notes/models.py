"""Tables of session notes: a note per session and kind, its immutable versions, disclosures.

A note hangs off the session row (DESIGN.md, "Identity"), never off a provider id or an
occurrence, so reschedules, re-syncs and provider id changes cannot detach it.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UtcDateTime, utcnow


class NoteKind(enum.StrEnum):
    """``progress``: the clinical record; ``process``: psychotherapy notes (45 CFR 164.501), author only."""

    PROGRESS = "progress"
    PROCESS = "process"


class Note(Base):
    """One note of a session; its text lives in :class:`NoteVersion` rows."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    # The client whose data key encrypts the versions (the session's client when it was written).
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    signed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class NoteVersion(Base):
    """One version of a note's text, AES-GCM under the client's data key; never updated in place.

    Only a payload re-encryption (``alliance keys reencrypt``) rewrites ``body``, with the same
    plaintext under a newer key.
    """

    __tablename__ = "note_versions"
    __table_args__ = (UniqueConstraint("note_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    note_id: Mapped[int] = mapped_column(ForeignKey("notes.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class NoteDisclosure(Base):
    """An authorised disclosure of psychotherapy notes: which notes, when, and why.

    The reason is free text a therapist typed, so it is encrypted under the therapist's key (not
    the client's: the record of a disclosure must outlive an erasure of the client).
    """

    __tablename__ = "note_disclosures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"), index=True)
    client_id: Mapped[int] = mapped_column(Integer, index=True)
    note_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    reason: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class KeyReencryptRun(Base):
    """One ``alliance keys reencrypt`` run: clients whose key predates ``started_at`` still need it.

    A run that never finished (a crash) is resumed by the next invocation with the same start.
    """

    __tablename__ = "key_reencrypt_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    clients_done: Mapped[int] = mapped_column(Integer, default=0)
