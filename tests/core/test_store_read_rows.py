"""Store.read_rows: one prebuilt read, through the caller's transaction or on a connection of its own."""

from __future__ import annotations

from sqlalchemy import bindparam, select

from core.mirror import ensure_therapist
from core.store import Store
from core.store.models import Therapist

_EMAIL_OF = select(Therapist.email).where(Therapist.id == bindparam("therapist_pk"))


def test_a_read_through_a_transaction_sees_its_uncommitted_writes_and_a_read_alone_does_not(store: Store) -> None:
    therapist_id = ensure_therapist(store, "before@example.org")
    with store.session() as session:
        session.get_one(Therapist, therapist_id).email = "after@example.org"
        session.flush()
        inside = store.read_rows(_EMAIL_OF, {"therapist_pk": therapist_id}, through=session)
        assert [tuple(row) for row in inside] == [("after@example.org",)]
        session.rollback()
    alone = store.read_rows(_EMAIL_OF, {"therapist_pk": therapist_id})
    assert [tuple(row) for row in alone] == [("before@example.org",)]
    assert store.read_rows(_EMAIL_OF, {"therapist_pk": therapist_id + 1000}) == []
