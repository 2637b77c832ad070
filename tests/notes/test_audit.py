"""The audit log: every entry chained to the previous one; removal or alteration is found and named."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, select, update

from core.audit import Actor, AuditEntry, AuditError, record, verify
from core.store import Store
from core.store.db import make_engine


def _append(store: Store, n: int, actor: Actor | None = None) -> None:
    for i in range(n):
        with store.session() as session:
            record(session, actor or Actor(1, "test"), "read", "note", i + 1, client_id=7, detail={"version": i})


def _verify(store: Store) -> tuple[int, list[tuple[int, str]]]:
    with store.session() as session:
        count, findings = verify(session)
    return count, [(f.seq, f.problem) for f in findings]


def test_an_intact_chain_verifies(store: Store) -> None:
    assert _verify(store) == (0, [])
    _append(store, 5)
    assert _verify(store) == (5, [])


def test_an_altered_entry_is_named(store: Store) -> None:
    _append(store, 5)
    with store.session() as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(origin="elsewhere"))
    count, findings = _verify(store)
    assert count == 5
    assert findings == [(3, "was altered (its hash does not match its content)")]


def test_an_altered_time_or_detail_is_found_too(store: Store) -> None:
    _append(store, 3)
    with store.session() as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(at=datetime(2020, 1, 1, tzinfo=UTC)))
        session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(detail={"version": 99}))
    assert [seq for seq, _ in _verify(store)[1]] == [2, 3]


def test_a_removed_entry_is_found_where_it_was(store: Store) -> None:
    _append(store, 5)
    with store.session() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
    _, findings = _verify(store)
    assert findings[0] == (3, "entries 2 to 2 are missing")
    assert (3, "does not follow the previous entry (one was removed or altered)") in findings


def test_entries_removed_from_the_end_are_found(store: Store) -> None:
    _append(store, 5)
    with store.session() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq >= 4))
    assert _verify(store)[1] == [(4, "entries 4 to 5 were removed from the end")]


def test_a_rewritten_chain_is_still_caught_by_the_next_entry(store: Store) -> None:
    # Someone recomputes an altered entry's own hash: the next entry no longer follows it.
    _append(store, 3)
    with store.session() as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(hash="f" * 64))
    findings = _verify(store)[1]
    assert (2, "was altered (its hash does not match its content)") in findings
    assert (3, "does not follow the previous entry (one was removed or altered)") in findings


def test_the_log_refuses_text_in_details_and_unknown_actions(store: Store) -> None:
    with store.session() as session, pytest.raises(AuditError):
        record(session, Actor(1, "test"), "read", "note", 1, detail={"text": "patient talked about her divorce"})
    with store.session() as session, pytest.raises(AuditError):
        record(session, Actor(1, "test"), "peek", "note", 1)
    assert _verify(store) == (0, [])


def test_a_rolled_back_change_leaves_no_entry(store: Store) -> None:
    with pytest.raises(RuntimeError), store.session() as session:
        record(session, Actor(1, "test"), "create", "note", 1)
        raise RuntimeError("the audited change failed")
    _append(store, 1)
    assert _verify(store) == (1, [])


@pytest.mark.postgres
def test_concurrent_writers_on_postgresql_keep_one_unbroken_chain(clean_postgres_url: str) -> None:
    # Separate engines: separate connection pools, as separate processes would have. The database
    # is emptied (no head row): the first appenders race to create it too.
    stores = [Store(make_engine(clean_postgres_url)) for _ in range(6)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def write(s: Store, who: int) -> None:
        try:
            barrier.wait()
            _append(s, 25, Actor(who, f"thread {who}"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, i + 1)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores[1:]:
        s.close()
    store = stores[0]
    assert errors == []
    assert _verify(store) == (150, [])
    with store.session() as session:
        seqs = list(session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)))
    assert seqs == list(range(1, 151))
    store.close()
