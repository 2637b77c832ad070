"""How many transactions each outbox handler's delivery costs (commits counted on the engine).

An in-person session assigned, then moved: every handler runs through the real outbox delivery
(core.jobs.outbox.deliver_one) on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import event, select

from alliance.jobs import build_registry, retry_policy
from alliance.settings import Settings
from core.clients import assign_occurrence, create_client, find_occurrence, list_sessions
from core.jobs import DONE
from core.jobs.models import OutboxDelivery
from core.jobs.outbox import deliver_one, relay
from core.mirror import add_connection, ensure_therapist
from core.store import OutboxEvent, Store
from core.sync import OccurrenceKey, RemoteOccurrence, sync_connection
from integrations.base import MemoryCalendar, MemoryProvider


class Commits:
    def __init__(self, store: Store) -> None:
        self.count = 0
        self.store = store

    def __enter__(self) -> Commits:
        event.listen(self.store.engine, "commit", self._commit)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.store.engine, "commit", self._commit)

    def _commit(self, conn: object) -> None:
        self.count += 1


def _occ(uid: str, start: datetime) -> RemoteOccurrence:
    return RemoteOccurrence(
        key=OccurrenceKey(uid, ""), start=start, end=start + timedelta(minutes=50), title="Session", timezone="UTC"
    )


def deliveries_cost(store: Store, tmp_path: Path) -> dict[str, int]:
    settings = Settings(home=tmp_path)
    registry = build_registry(settings)
    policy = retry_policy(settings)
    therapist = ensure_therapist(store, "t@example.org")
    calendar = MemoryCalendar()
    connection = add_connection(store, therapist, "memory", "work", {"calendar": "work"})
    client = create_client(store, therapist, name="Annabel Quigley", modality="in_person").code
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    calendar.put(_occ("e1", start))
    sync_connection(store, connection, MemoryProvider(calendar))
    occurrence_id = find_occurrence(store, therapist, "e1", start)
    assign_occurrence(store, therapist, occurrence_id, client, modality="in_person")

    costs: Counter[str] = Counter()
    seen: set[int] = set()

    def run_all() -> None:
        now = datetime.now(UTC)
        relay(store, registry, now)
        with store.session() as session:
            rows = session.execute(
                select(OutboxDelivery.id, OutboxDelivery.handler, OutboxEvent.kind).join(
                    OutboxEvent, OutboxEvent.event_id == OutboxDelivery.event_id
                )
            ).all()
        for delivery_id, handler, kind in rows:
            if delivery_id in seen:
                continue
            seen.add(delivery_id)
            with Commits(store) as commits:
                assert deliver_one(store, registry, delivery_id, now, policy) == DONE
            costs[f"{kind} {handler}"] = commits.count

    run_all()
    calendar.put(_occ("e1", start + timedelta(hours=1)))  # the session moved
    sync_connection(store, connection, MemoryProvider(calendar))
    run_all()
    return dict(costs)


# Commits per delivery of one event to one handler: the delivery's own (handler and "done"
# together; its claim is a statement on its own, Store.one_statement, and commits no transaction)
# and the handler's. Each figure below counted the claim's commit too (one more) before session 16.
# Before the handlers read through the delivery's session (and the video lease was taken in the
# transaction reading its facts, the notes' carry-over and re-link shared one, the rules wrote
# through the delivery), with the claim's: rules 3, created/notes 4, created/video 7,
# rescheduled/client mail 6, rescheduled/video 7, assigned/client mail 5, assigned/video 6.
MOST = {
    "occurrence.created clients.assign_sessions": 1,
    "occurrence.created notes.relink_sessions": 2,
    "occurrence.created video.lifecycle": 3,
    "session.assigned links.issue": 2,
    "session.assigned client_mail.reconcile": 3,
    "session.assigned video.lifecycle": 3,
    "occurrence.rescheduled clients.assign_sessions": 1,
    "occurrence.rescheduled client_mail.reconcile": 3,
    "occurrence.rescheduled video.lifecycle": 3,
}


def test_outbox_handlers_read_through_the_delivery_and_cost_fewer_transactions(store: Store, tmp_path: Path) -> None:
    costs = deliveries_cost(store, tmp_path)
    assert set(costs) == set(MOST)
    assert {k: v for k, v in costs.items() if v > MOST[k]} == {}


def test_sessions_the_rules_make_commit_with_the_delivery_and_their_events_follow(store: Store, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    registry = build_registry(settings)
    policy = retry_policy(settings)
    therapist = ensure_therapist(store, "t@example.org")
    calendar = MemoryCalendar()
    connection = add_connection(store, therapist, "memory", "work", {"calendar": "work"})
    create_client(store, therapist, name="Annabel Quigley", email="annabel@example.org", modality="online")
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    calendar.put(
        RemoteOccurrence(
            key=OccurrenceKey("e1", ""),
            start=start,
            end=start + timedelta(minutes=50),
            title="Session",
            timezone="UTC",
            attendees=("Annabel@Example.org",),
        )
    )
    sync_connection(store, connection, MemoryProvider(calendar))
    now = datetime.now(UTC)
    relay(store, registry, now)
    with store.session() as session:
        [delivery_id] = session.scalars(
            select(OutboxDelivery.id).where(OutboxDelivery.handler == "clients.assign_sessions")
        )
    with Commits(store) as commits:
        assert deliver_one(store, registry, delivery_id, now, policy) == DONE
    assert commits.count == 1  # the rules' session, its event and "done" together (the claim: no transaction)
    [session_view] = list_sessions(store, therapist)
    assert session_view.source == "rule" and session_view.modality == "online"
    with store.session() as session:
        assert session.scalar(select(OutboxEvent.kind).order_by(OutboxEvent.id.desc()).limit(1)) == "session.assigned"
    # The event the rules wrote is relayed and delivered like any other.
    relay(store, registry, now)
    with store.session() as session:
        pending = list(session.scalars(select(OutboxDelivery.id).where(OutboxDelivery.status == "pending")))
    assert pending
    assert {deliver_one(store, registry, i, now, policy) for i in pending} == {DONE}
