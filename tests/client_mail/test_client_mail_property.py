"""Properties: whatever happens to a session, the waiting client mail matches it as it is now.

Random sequences of assign / move / cancel / restore / reassign go through the real stack (memory
calendar, sync engine, core.clients, the job registry); after each step the pending messages of
the session must be exactly what the session's current state asks for.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from core.client_mail import PURPOSES, Kind, MailPlanConfig, SessionFacts, plan
from core.clients import assign_occurrence, create_client, find_occurrence
from core.links.policy import CallTimes
from core.mail import PENDING, MailMessage
from core.store import Store
from core.sync import Status
from tests.links.world import LinkWorld, make_settings

START = datetime(2030, 6, 3, 8, 0, tzinfo=UTC)
MINUTES = 50

step = st.one_of(
    st.tuples(st.just("assign"), st.integers(0, 2)),  # client 0 and 1 have an address, 2 has none
    st.tuples(st.just("move"), st.integers(0, 240)),  # hours after START
    st.tuples(st.just("cancel"), st.just(0)),
    st.tuples(st.just("restore"), st.just(0)),
)
# Mostly sessions assigned early (where mail matters), sometimes steps before any assignment.
ops = st.one_of(
    st.builds(
        lambda first, rest: [first, *rest], st.tuples(st.just("assign"), st.integers(0, 1)), st.lists(step, max_size=6)
    ),
    st.lists(step, min_size=1, max_size=7),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops)
def test_pending_mail_always_matches_the_session(
    sqlite_store: Store, tmp_path: Path, steps: list[tuple[str, int]]
) -> None:
    store = sqlite_store
    world = LinkWorld(store, email=f"t-{uuid.uuid4().hex[:8]}@alliance.test", name=uuid.uuid4().hex[:8])
    app = make_settings(tmp_path)
    therapist = world.therapist
    codes = [
        create_client(store, therapist, email="a@example.org", timezone="Europe/Madrid").code,
        create_client(store, therapist, email="b@example.org").code,
        create_client(store, therapist).code,
    ]
    client_ids: dict[str, int] = {}
    start, cancelled, owner = START, False, None
    session_id: int | None = None
    world.put("p", start)
    world.sync()
    occurrence_id = find_occurrence(store, therapist, "p", START)  # its identity survives moves
    for op, arg in steps:
        if op == "assign":
            view = assign_occurrence(store, therapist, occurrence_id, codes[arg])
            session_id, owner = view.id, arg
            client_ids[codes[arg]] = view.client_id
        else:
            if op == "move":
                start = START + timedelta(hours=arg)
            elif op == "cancel":
                cancelled = True
            else:
                cancelled = False
            world.put("p", start, minutes=MINUTES, status=Status.CANCELLED if cancelled else Status.CONFIRMED)
            world.sync()
        world.run_jobs(app)
        if session_id is None:
            continue
        with store.session() as session:
            pending = list(
                session.scalars(
                    select(MailMessage).where(
                        MailMessage.session_id == session_id,
                        MailMessage.status == PENDING,
                        MailMessage.purpose.in_(PURPOSES),
                    )
                )
            )
        if cancelled or owner == 2:
            assert pending == [], (op, arg)
            continue
        assert owner is not None
        assert {m.client_id for m in pending} == {client_ids[codes[owner]]}, "only the current client's mail waits"
        reminders = sorted(m.send_after for m in pending if m.purpose == Kind.REMINDER.value)
        assert reminders == [start - timedelta(hours=24), start - timedelta(hours=1)]
        assert all(m.expires_at == start for m in pending if m.purpose != Kind.RATING.value)
        ratings = [m.send_after for m in pending if m.purpose == Kind.RATING.value]
        assert ratings == [start + timedelta(minutes=MINUTES + 5)]
        invitations = [m for m in pending if m.purpose == Kind.INVITATION.value]
        assert len(invitations) <= 1


times = st.datetimes(min_value=datetime(2030, 1, 1), max_value=datetime(2031, 1, 1), timezones=st.just(UTC))


@given(
    start=times,
    minutes=st.integers(1, 600),
    hours=st.lists(st.integers(1, 336), min_size=0, max_size=4),
    cancelled=st.booleans(),
    rated=st.booleans(),
    call=st.one_of(st.none(), st.tuples(st.integers(0, 120), st.booleans())),
    moves=st.integers(0, 5),
    cancels=st.integers(0, 5),
)
def test_the_plan_is_consistent(
    start: datetime,
    minutes: int,
    hours: list[int],
    cancelled: bool,
    rated: bool,
    call: tuple[int, bool] | None,
    moves: int,
    cancels: int,
) -> None:
    end = start + timedelta(minutes=minutes)
    config = MailPlanConfig(reminder_hours=tuple(hours))
    calls = None if call is None else CallTimes(start, start + timedelta(minutes=call[0]), call[1])
    facts = SessionFacts(
        1, "x@example.org", "t" * 32, cancelled, start, end, calls, rated, moves=moves, cancels=cancels
    )
    items = plan(facts, config)
    keys = [i.key for i in items]
    assert len(set(keys)) == len(keys) and all(len(k) <= 200 for k in keys)
    if cancelled:
        assert items == []
        return
    assert sorted(i.hours for i in items if i.kind is Kind.REMINDER) == sorted(set(hours))  # type: ignore[type-var]
    assert all(i.send_after is not None and i.send_after < i.expires_at for i in items if i.kind is not Kind.INVITATION)
    rating = [i for i in items if i.kind is Kind.RATING]
    no_rating = rated or (calls is not None and (calls.no_show or (call is not None and call[0] < 10)))
    assert (rating == []) == no_rating
    # Another start, a cancel-restore or another recipient: none of the reminder keys is reused.
    moved = plan(
        SessionFacts(
            1,
            "x@example.org",
            "t" * 32,
            False,
            start + timedelta(minutes=5),
            end,
            calls,
            rated,
            moves=moves,
            cancels=cancels,
        ),
        config,
    )
    restored = plan(
        SessionFacts(1, "x@example.org", "t" * 32, False, start, end, calls, rated, moves=moves, cancels=cancels + 1),
        config,
    )
    other = plan(
        SessionFacts(1, "y@example.org", "t" * 32, False, start, end, calls, rated, moves=moves, cancels=cancels),
        config,
    )
    reminder_keys = {i.key for i in items if i.kind is Kind.REMINDER}
    for again in (moved, restored, other):
        assert reminder_keys.isdisjoint(i.key for i in again)
    # No address or no link: nothing at all.
    assert plan(SessionFacts(1, None, "t" * 32, False, start, end), config) == []
    assert plan(SessionFacts(1, "x@example.org", None, False, start, end), config) == []
