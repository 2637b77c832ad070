"""Batched audit entries (``record_many``, the note import's path) chain exactly like single ones.

``record_many`` assembles each entry's canonical JSON from pieces it encodes once per call;
``verify`` recomputes every hash the generic way, so any difference in the bytes shows up here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from core.audit import Actor, AuditEntry, Entry, record, record_many, verify
from core.store import Store
from core.store.bulk import SMALL_COPY_THRESHOLD

_ids = st.none() | st.integers(min_value=0, max_value=2**31 - 1)
_words = st.sampled_from(["progress", "process", "tampered_or_moved", "x-1"])
_values = st.none() | st.booleans() | st.integers(min_value=-(2**40), max_value=2**40) | _words
_details = (
    st.none()
    | st.dictionaries(st.sampled_from(["kind", "version", "history", "reason", "count"]), _values, max_size=4)
    | st.builds(lambda ids: {"note_ids": ids}, st.lists(st.integers(min_value=1, max_value=10**6), max_size=4))
)
_entries = st.builds(
    Entry,
    st.sampled_from(["create", "read", "list", "export", "erase"]),
    st.sampled_from(["note", "client", "session"]),
    _ids,
    _ids,
    _details,
)
_actors = st.builds(
    Actor,
    st.none() | st.integers(min_value=1, max_value=10**6),
    st.text(st.characters(blacklist_characters="\x00"), max_size=130),
)
_instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actor=_actors, entries=st.lists(_entries, min_size=1, max_size=12), at=_instants)
@example(  # equal in Python, hashed alike, yet different details: neither may stand in for the other
    actor=Actor(2, "cli"),
    entries=[Entry("read", "note", 1, 1, {"version": 1}), Entry("read", "note", 2, 1, {"version": True})],
    at=datetime(2031, 1, 1, tzinfo=UTC),
)
def test_batched_entries_are_stored_as_given_and_verify_like_single_ones(
    store: Store, actor: Actor, entries: list[Entry], at: datetime
) -> None:
    with store.session() as session:
        record(session, Actor(1, "cli"), "read", "note", 1)
        seqs = record_many(session, actor, entries, at=at)
        record(session, Actor(1, "cli"), "read", "note", 2)
    with store.session() as session:
        _, findings = verify(session)
        stored = session.scalars(select(AuditEntry).where(AuditEntry.seq.in_(seqs)).order_by(AuditEntry.seq)).all()
    assert findings == []
    assert seqs == list(range(seqs[0], seqs[0] + len(entries)))
    # json.dumps: True and 1 compare equal in Python but are different entries.
    assert [
        json.dumps([e.action, e.target_kind, e.target_id, e.client_id, e.detail, e.actor, e.origin]) for e in stored
    ] == [
        json.dumps([e.action, e.target_kind, e.target_id, e.client_id, e.detail or {}, actor.label, actor.origin[:120]])
        for e in entries
    ]


def test_an_entry_of_a_batch_altered_afterwards_is_named(store: Store) -> None:
    shared = {"kind": "progress", "version": 1}  # one dict for every entry, as the import passes it
    count = SMALL_COPY_THRESHOLD + 5  # PostgreSQL: the COPY path
    with store.session() as session:
        record_many(session, Actor(3, "api 127.0.0.1"), [Entry("create", "note", i, 9, shared) for i in range(count)])
    with store.session() as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 4).values(detail={"kind": "process", "version": 1}))
    with store.session() as session:
        stored = [e.detail for e in session.query(AuditEntry).order_by(AuditEntry.seq)]
        _, findings = verify(session)
    assert len(stored) == count and stored[3] == {"kind": "process", "version": 1}
    assert stored[:3] + stored[4:] == [shared] * (count - 1)
    assert [(f.seq, f.problem) for f in findings] == [(4, "was altered (its hash does not match its content)")]
