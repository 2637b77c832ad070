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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.audit.models import AuditEntry, AuditHead
from core.store.bulk import SMALL_COPY_THRESHOLD, insert_columns

GENESIS = "0" * 64
_HEAD_ID = 1
_ENTRIES: Table = AuditEntry.__table__  # type: ignore[assignment]
_HEAD: Table = AuditHead.__table__  # type: ignore[assignment]
# Built once: SQLAlchemy then reuses their cache keys and compiled forms on every append.
_INSERT_ENTRY = _ENTRIES.insert()
_CLAIM = (
    _HEAD.update().where(_HEAD.c.id == _HEAD_ID).values(seq=_HEAD.c.seq + 1).returning(_HEAD.c.seq, _HEAD.c.last_hash)
)
_CLAIM_MANY = (
    _HEAD.update()
    .where(_HEAD.c.id == _HEAD_ID)
    .values(seq=_HEAD.c.seq + bindparam("count"))
    .returning(_HEAD.c.seq, _HEAD.c.last_hash)
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


# The canonical form an entry's hash covers. One encoder for every entry: ``json.dumps`` with these
# options would build a new encoder per call.
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str).encode


def _digest(prev_hash: str, fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + _canonical(fields).encode()).hexdigest()


def _json_id(value: int | None) -> str:
    # What the encoder writes for an id: a plain int as its repr, None as null.
    if value is None:
        return "null"
    return int.__repr__(value) if type(value) is int else _canonical(value)


def _at_text(at: datetime) -> str:
    # Microsecond UTC text: what both databases give back unchanged.
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
        "at": _at_text(at),
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


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of :func:`record_many`: what was done to which record."""

    action: str
    target_kind: str
    target_id: int | None
    client_id: int | None = None
    detail: Mapping[str, Any] | None = None


def _claim_many(session: Session, count: int) -> tuple[int, str]:
    """Lock the chain head and reserve ``count`` sequence numbers: (the first one, the previous hash)."""
    for _ in range(2):
        claimed = session.connection().execute(_CLAIM_MANY, {"count": count}).first()
        if claimed is not None:
            return int(claimed[0]) - count + 1, str(claimed[1])
        _seed_head(session)
    raise AuditError("the audit chain head cannot be created")


def record_many(session: Session, actor: Actor, entries: Sequence[Entry], *, at: datetime | None = None) -> list[int]:
    """Append one chained entry per item of ``entries`` in the caller's transaction (a batch write:
    the same entries :func:`record` would append one by one, with one head claim and one INSERT
    of many rows). Returns their sequence numbers."""
    if not entries:
        return []
    details = _DetailCache()
    checked: list[tuple[Entry, dict[str, Any], str]] = []
    for entry in entries:  # everything checked before the head is touched
        if entry.action not in ACTIONS:
            raise AuditError(f"unknown audit action {entry.action!r}")
        if entry.target_kind not in TARGETS:
            raise AuditError(f"unknown audit target {entry.target_kind!r}")
        checked.append((entry, *details.get(entry.detail or {})))
    when = at or datetime.now(UTC)
    if when.tzinfo is None:
        raise AuditError("audit times must be aware datetimes")
    when = when.astimezone(UTC)
    origin = actor.origin[:120]
    first, prev_hash = _claim_many(session, len(checked))
    # The canonical JSON of each entry (what _digest hashes, byte for byte: tests/core/test_audit_batch.py)
    # is assembled from pieces: what every entry of the call shares is encoded once, per entry only
    # its ids and detail. ``verify`` recomputes every hash the generic way.
    shared = f',"actor":{_canonical(actor.label)},"at":{_canonical(_at_text(when))},"client_id":'
    middle = f',"origin":{_canonical(origin)},"seq":'
    tail = f',"therapist_id":{_json_id(actor.therapist_id)}}}'
    words: dict[str, str] = {}
    seqs: list[int] = []
    prevs: list[str] = []
    hashes: list[str] = []
    sha256 = hashlib.sha256
    for seq, (entry, _, detail_json) in enumerate(checked, start=first):
        action = words.get(entry.action) or words.setdefault(entry.action, _canonical(entry.action))
        kind = words.get(entry.target_kind) or words.setdefault(entry.target_kind, _canonical(entry.target_kind))
        canonical = "".join(
            (
                '{"action":',
                action,
                shared,
                _json_id(entry.client_id),
                ',"detail":',
                detail_json,
                middle,
                int.__repr__(seq),
                ',"target_id":',
                _json_id(entry.target_id),
                ',"target_kind":',
                kind,
                tail,
            )
        )
        digest = sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()
        seqs.append(seq)
        prevs.append(prev_hash)
        hashes.append(digest)
        prev_hash = digest
    count = len(checked)
    conn = session.connection()
    insert_columns(
        conn,
        _ENTRIES,
        {
            "seq": seqs,
            "at": [when] * count,
            "actor": [actor.label] * count,
            "therapist_id": [actor.therapist_id] * count,
            "action": [c[0].action for c in checked],
            "target_kind": [c[0].target_kind for c in checked],
            "target_id": [c[0].target_id for c in checked],
            "client_id": [c[0].client_id for c in checked],
            "origin": [origin] * count,
            # The same dict object for every entry with the same detail: the insert encodes it once.
            "detail": [c[1] for c in checked],
            "prev_hash": prevs,
            "hash": hashes,
        },
        copy_from=SMALL_COPY_THRESHOLD,  # an entry per note of an import: COPY from the notes' threshold on
    )
    conn.execute(_SET_HEAD, {"digest": prev_hash})
    return seqs


class _DetailCache:
    """Checked details and their canonical JSON, computed once per distinct detail of a batch."""

    def __init__(self) -> None:
        self._seen: dict[tuple[tuple[str, type, Any], ...], tuple[dict[str, Any], str]] = {}
        # By identity first: a batch hands the same dict to many entries (core.notes.bulk gives
        # every note of a kind one), and building the sorted key per entry cost more than the
        # rest of the entry's checks. The dict is kept alive here, so its id is not reused.
        self._by_id: dict[int, tuple[Mapping[str, Any], tuple[dict[str, Any], str]]] = {}

    def get(self, detail: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        known = self._by_id.get(id(detail))
        if known is not None and known[0] is detail:
            return known[1]
        found = self._get(detail)
        self._by_id[id(detail)] = (detail, found)
        return found

    def _get(self, detail: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        try:
            # The type too: True == 1 (and hashes alike), but they encode differently.
            key = tuple(sorted((k, type(v), v) for k, v in detail.items()))
            hash(key)
        except TypeError:  # a list of ids: not shared, checked and encoded on its own
            clean = _check_detail(detail)
            return clean, _canonical(clean)
        found = self._seen.get(key)
        if found is None:
            clean = _check_detail(detail)
            found = self._seen[key] = (clean, _canonical(clean))
        return found


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
