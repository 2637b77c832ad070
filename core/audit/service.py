"""Append to and verify the hash-chained audit log.

Appending happens inside the caller's transaction, so an entry exists exactly when the audited
change committed. The chain head is one row (``audit_head``); every append starts with an
``UPDATE ... RETURNING`` on it, which takes that row's lock on PostgreSQL (and the write lock on
SQLite) before the previous hash is read. Two concurrent appenders therefore queue on the head
instead of both chaining onto the same predecessor; the second one sees the first one's hash once
the first commits (READ COMMITTED re-reads a row updated under it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.audit.models import AuditEntry, AuditHead

GENESIS = "0" * 64
_HEAD_ID = 1
_ENTRIES: Table = AuditEntry.__table__  # type: ignore[assignment]
_HEAD: Table = AuditHead.__table__  # type: ignore[assignment]
# Built once: SQLAlchemy then reuses their cache keys and compiled forms on every append.
_INSERT_ENTRY = _ENTRIES.insert()
_CLAIM = (
    _HEAD.update().where(_HEAD.c.id == _HEAD_ID).values(seq=_HEAD.c.seq + 1).returning(_HEAD.c.seq, _HEAD.c.last_hash)
)
_SET_HEAD = _HEAD.update().where(_HEAD.c.id == _HEAD_ID).values(last_hash=bindparam("digest"))
ACTIONS = frozenset(
    {"create", "read", "update", "sign", "export", "disclose", "erase", "decrypt_failed", "list", "reencrypt"}
)
TARGETS = frozenset({"note", "client", "session", "keyring"})


class AuditError(Exception):
    """An entry that may not be written (unknown action, text in the detail)."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts and from where: ``origin`` is e.g. ``"api 127.0.0.1"``, ``"page 10.0.0.2"``, ``"cli ana@host"``."""

    therapist_id: int | None
    origin: str

    @property
    def label(self) -> str:
        return f"therapist:{self.therapist_id}" if self.therapist_id is not None else "system"


@dataclass(frozen=True, slots=True)
class Finding:
    """What ``verify`` found wrong, naming the entry (its sequence number)."""

    seq: int
    problem: str


def _check_detail(detail: Mapping[str, Any]) -> dict[str, Any]:
    # The log must never carry note text or a name: only ids, numbers, booleans and short fixed words.
    clean: dict[str, Any] = {}
    for key, value in detail.items():
        word = isinstance(value, str) and len(value) <= 40 and value.replace("_", "").replace("-", "").isalnum()
        if isinstance(value, bool | int) or value is None or word:
            clean[key] = value
        elif isinstance(value, list) and all(isinstance(v, int) for v in value):
            clean[key] = list(value)
        else:
            raise AuditError(f"audit detail {key!r} must be an id, number or fixed word")
    return clean


def _digest(prev_hash: str, fields: Mapping[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical.encode()).hexdigest()


def _fields(
    seq: int,
    at: datetime,
    actor: str,
    therapist_id: int | None,
    action: str,
    target_kind: str,
    target_id: int | None,
    client_id: int | None,
    origin: str,
    detail: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "seq": seq,
        # Microsecond UTC text: what both databases give back unchanged.
        "at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": actor,
        "therapist_id": therapist_id,
        "action": action,
        "target_kind": target_kind,
        "target_id": target_id,
        "client_id": client_id,
        "origin": origin,
        "detail": dict(detail),
    }


def _seed_head(session: Session) -> None:
    """Create the head row if it is missing (a database built from metadata alone, or emptied).

    ON CONFLICT DO NOTHING: concurrent first appenders all succeed, one row results.
    """
    dialect = session.get_bind().dialect.name
    values = {"id": _HEAD_ID, "seq": 0, "last_hash": GENESIS}
    if dialect == "postgresql":
        session.execute(pg_insert(AuditHead).values(values).on_conflict_do_nothing(index_elements=["id"]))
    else:
        session.execute(sqlite_insert(AuditHead).values(values).on_conflict_do_nothing(index_elements=["id"]))


def _claim_head(session: Session) -> tuple[int, str]:
    """Lock the chain head and return (the new entry's seq, the previous hash)."""
    for _ in range(2):
        claimed = session.connection().execute(_CLAIM).first()
        if claimed is not None:
            return int(claimed[0]), str(claimed[1])
        _seed_head(session)
    raise AuditError("the audit chain head cannot be created")


def record(
    session: Session,
    actor: Actor,
    action: str,
    target_kind: str,
    target_id: int | None,
    *,
    client_id: int | None = None,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> int:
    """Append one entry in the caller's transaction; returns its sequence number."""
    if action not in ACTIONS:
        raise AuditError(f"unknown audit action {action!r}")
    if target_kind not in TARGETS:
        raise AuditError(f"unknown audit target {target_kind!r}")
    clean = _check_detail(detail or {})
    when = at or datetime.now(UTC)
    if when.tzinfo is None:
        raise AuditError("audit times must be aware datetimes")
    when = when.astimezone(UTC)
    origin = actor.origin[:120]
    seq, prev_hash = _claim_head(session)
    fields = _fields(
        seq, when, actor.label, actor.therapist_id, action, target_kind, target_id, client_id, origin, clean
    )
    digest = _digest(prev_hash, fields)
    # Core statements on the session's connection: every audited call pays for these three, and
    # the ORM unit of work costs more than the statements themselves (benchmarks/notes.py).
    conn = session.connection()
    conn.execute(
        _INSERT_ENTRY,
        {
            "seq": seq,
            "at": when,
            "actor": actor.label,
            "therapist_id": actor.therapist_id,
            "action": action,
            "target_kind": target_kind,
            "target_id": target_id,
            "client_id": client_id,
            "origin": origin,
            "detail": clean,
            "prev_hash": prev_hash,
            "hash": digest,
        },
    )
    conn.execute(_SET_HEAD, {"digest": digest})
    return seq


def _entries(session: Session, batch: int = 2000) -> Iterator[AuditEntry]:
    last = -1
    while True:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify(session: Session) -> tuple[int, list[Finding]]:
    """Walk the chain: (entries checked, what is wrong). An empty list means the log is intact."""
    findings: list[Finding] = []
    expected_seq = 1
    prev = GENESIS
    count = 0
    for entry in _entries(session):
        count += 1
        if entry.seq != expected_seq:
            findings.append(Finding(entry.seq, f"entries {expected_seq} to {entry.seq - 1} are missing"))
        if entry.prev_hash != prev:
            findings.append(Finding(entry.seq, "does not follow the previous entry (one was removed or altered)"))
        fields = _fields(
            entry.seq,
            entry.at,
            entry.actor,
            entry.therapist_id,
            entry.action,
            entry.target_kind,
            entry.target_id,
            entry.client_id,
            entry.origin,
            entry.detail or {},
        )
        if _digest(entry.prev_hash, fields) != entry.hash:
            findings.append(Finding(entry.seq, "was altered (its hash does not match its content)"))
        prev = entry.hash
        expected_seq = entry.seq + 1
    head = session.get(AuditHead, _HEAD_ID)
    if head is not None and (head.seq != expected_seq - 1 or head.last_hash != prev):
        if head.seq > expected_seq - 1:
            findings.append(Finding(expected_seq, f"entries {expected_seq} to {head.seq} were removed from the end"))
        else:
            findings.append(Finding(head.seq, "the chain head does not match the last entry"))
    elif head is None and count:
        findings.append(Finding(1, "the chain head is missing"))
    return count, findings


@dataclass(frozen=True, slots=True)
class EntryView:
    seq: int
    at: datetime
    actor: str
    action: str
    target_kind: str
    target_id: int | None
    client_id: int | None
    origin: str
    detail: dict[str, Any]


def entries_for(
    session: Session, *, therapist_id: int | None = None, client_id: int | None = None, limit: int = 1000
) -> list[EntryView]:
    """The newest entries (oldest first), optionally of one therapist and/or client."""
    query = select(AuditEntry)
    if therapist_id is not None:
        query = query.where(AuditEntry.therapist_id == therapist_id)
    if client_id is not None:
        query = query.where(AuditEntry.client_id == client_id)
    rows = session.scalars(query.order_by(AuditEntry.seq.desc()).limit(limit)).all()
    return [
        EntryView(
            e.seq, e.at, e.actor, e.action, e.target_kind, e.target_id, e.client_id, e.origin, dict(e.detail or {})
        )
        for e in reversed(rows)
    ]
