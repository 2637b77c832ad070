"""Clients and sessions: codes, encryption at rest, series, rules, identity across syncs, scoping."""

from __future__ import annotations

import logging
import random
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from core.clients import (
    ALPHABET,
    AmbiguousEvent,
    Client,
    InvalidClientData,
    Modality,
    OccurrenceNotFound,
    SeriesAssignment,
    SessionSource,
    UnknownClient,
    UnknownEvent,
    apply_rules,
    archive_client,
    assign_event,
    assign_occurrence,
    assign_series,
    create_client,
    find_occurrence,
    find_series,
    generate_code,
    get_client,
    handle_outbox_event,
    list_clients,
    list_sessions,
    normalise_code,
    normalise_email,
    session_for_occurrence,
    set_session_modality,
    update_client,
)
from core.crypto import DecryptionError
from core.mirror import add_connection, ensure_therapist
from core.store import OutboxEvent, Store
from core.sync import OccurrenceKey, RemoteOccurrence, Status, recurrence_id_for, sync_connection
from integrations.base import MemoryCalendar, MemoryProvider
from tests.core.test_privacy_at_rest import _raw_dump

MONDAY = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)  # far from any wall clock the tests run at
ZOOM = "https://us02web.zoom.us/j/123456789"


class World:
    """One therapist with one memory calendar connection, and an outbox consumer like the job runner's."""

    def __init__(self, store: Store, email: str = "therapist@alliance.test", name: str = "work") -> None:
        self.store = store
        self.therapist = ensure_therapist(store, email)
        self.calendar = MemoryCalendar()
        self.connection = add_connection(store, self.therapist, "memory", name, {"calendar": name})
        self.outbox_seen = 0

    def sync(self) -> None:
        sync_connection(self.store, self.connection, MemoryProvider(self.calendar))

    def deliver_outbox(self) -> int:
        """Hand every new outbox event to the clients handler, as the job runner does."""
        with self.store.session() as session:
            events = session.execute(
                select(OutboxEvent.id, OutboxEvent.kind, OutboxEvent.occurrence_id)
                .where(OutboxEvent.id > self.outbox_seen)
                .order_by(OutboxEvent.id)
            ).all()
        changed = 0
        for event_id, kind, occurrence_id in events:
            changed += handle_outbox_event(self.store, kind, occurrence_id)
            self.outbox_seen = event_id
        return changed

    def put(self, uid: str, start: datetime, *, recurring: bool = False, **fields: object) -> OccurrenceKey:
        key = OccurrenceKey(uid, recurrence_id_for(start) if recurring else "")
        self.calendar.put(_occ(key, start, **fields))
        return key

    def weekly(self, uid: str, first: datetime, count: int, **fields: object) -> list[OccurrenceKey]:
        return [self.put(uid, first + timedelta(weeks=i), recurring=True, **fields) for i in range(count)]


def _occ(key: OccurrenceKey, start: datetime, minutes: int = 50, **fields: object) -> RemoteOccurrence:
    return RemoteOccurrence(key=key, start=start, end=start + timedelta(minutes=minutes), **fields)  # type: ignore[arg-type]


def _sessions_by_start(world: World) -> dict[datetime, tuple[str, str]]:
    return {s.start: (s.client_code, s.source.value) for s in list_sessions(world.store, world.therapist)}


# -- clients ------------------------------------------------------------------------------------


def test_codes_are_unique_random_and_from_the_unambiguous_alphabet(store: Store) -> None:
    world = World(store)
    codes = [create_client(store, world.therapist).code for _ in range(40)]
    assert len(set(codes)) == len(codes)
    for code in codes:
        assert len(code) == 4 and set(code) <= set(ALPHABET)
    assert not set("0O1IL") & set(ALPHABET)
    assert [c.code for c in list_clients(store, world.therapist)] == sorted(codes)


def test_a_code_that_is_taken_is_drawn_again_and_the_code_space_grows_when_crowded(store: Store) -> None:
    world = World(store)
    draws = iter(["K7Q2", "K7Q2", "M3X9"])
    assert create_client(store, world.therapist, code_generator=lambda n: next(draws)).code == "K7Q2"
    assert create_client(store, world.therapist, code_generator=lambda n: next(draws)).code == "M3X9"
    # Every 4-character draw clashes: after a few attempts the code gets one character longer.
    lengths: list[int] = []

    def crowded(length: int) -> str:
        lengths.append(length)
        return "K7Q2" if length == 4 else "K7Q2X"

    assert create_client(store, world.therapist, code_generator=crowded).code == "K7Q2X"
    assert lengths[-1] == 5 and lengths.count(4) >= 2


def test_a_chosen_code_is_validated_and_unique_per_therapist(store: Store) -> None:
    a, b = World(store), World(store, "other@alliance.test", "home")
    assert create_client(store, a.therapist, code="k7q2").code == "K7Q2"
    assert create_client(store, b.therapist, code="K7Q2").code == "K7Q2"  # another therapist's namespace
    with pytest.raises(InvalidClientData, match="already in use"):
        create_client(store, a.therapist, code="K7Q2")
    for bad in ("AB", "K0Q2", "KIQ2", "ANNA SMITH LONGER"):
        with pytest.raises(InvalidClientData):
            create_client(store, a.therapist, code=bad)


def test_client_details_are_validated_without_echoing_them(store: Store) -> None:
    world = World(store)
    with pytest.raises(InvalidClientData) as bad_email:
        create_client(store, world.therapist, email="anna at example dot org")
    assert "anna" not in str(bad_email.value)
    with pytest.raises(InvalidClientData, match="modality"):
        create_client(store, world.therapist, modality="telepathy")
    with pytest.raises(InvalidClientData, match="time zone"):
        create_client(store, world.therapist, timezone="Mars/Olympus")
    with pytest.raises(InvalidClientData, match="phone"):
        create_client(store, world.therapist, phone="call me maybe")
    assert list_clients(store, world.therapist) == []


SECRETS = {
    "name": "Wilhelmina Zwanenburg",
    "email": "wilhelmina.zwanenburg@example.org",
    "phone": "+34 611 987 654",
}


def test_client_details_are_encrypted_at_rest_and_bound_to_their_row(store: Store) -> None:
    world = World(store)
    client = create_client(
        store,
        world.therapist,
        name=SECRETS["name"],
        email=SECRETS["email"].upper(),
        phone=SECRETS["phone"],
        timezone="Europe/Berlin",
        modality="in-person",
    )
    other = create_client(store, world.therapist, name="Someone Else")
    revealed = get_client(store, world.therapist, client.code, reveal=True).details
    assert revealed is not None
    assert (revealed.name, revealed.email, revealed.phone) == (SECRETS["name"], SECRETS["email"], SECRETS["phone"])
    assert (revealed.timezone, revealed.modality) == ("Europe/Berlin", Modality.IN_PERSON)
    assert get_client(store, world.therapist, client.code).details is None  # only when asked for

    # A ciphertext copied into another client's row does not decrypt there.
    with store.session() as session:
        rows = {c.id: c for c in session.scalars(select(Client))}
        rows[other.id].details = rows[client.id].details
    with pytest.raises(DecryptionError):
        get_client(store, world.therapist, other.code, reveal=True)

    dump = _raw_dump(store)
    assert len(dump) > 1000
    for label, secret in SECRETS.items():
        # Fragments long enough never to turn up by chance in ciphertext, hex ids or timestamps.
        for fragment in {f for f in (secret, secret.split()[-1], secret[-9:], secret.split("@")[0]) if len(f) >= 7}:
            assert fragment.encode() not in dump, f"{label} fragment {fragment!r} found in the raw dump"


def test_updating_and_archiving_a_client(store: Store) -> None:
    world = World(store)
    client = create_client(store, world.therapist, name="A", phone="+1 555 0100")
    updated = update_client(store, world.therapist, client.code, name="B", modality="online")
    assert updated.details is not None
    assert (updated.details.name, updated.details.phone, updated.details.modality) == (
        "B",
        "+1 555 0100",
        Modality.ONLINE,
    )
    cleared = update_client(store, world.therapist, client.code, phone=None)
    assert cleared.details is not None and cleared.details.phone is None
    archive_client(store, world.therapist, client.code)
    assert list_clients(store, world.therapist) == []
    assert [c.code for c in list_clients(store, world.therapist, include_archived=True)] == [client.code]


# -- series -------------------------------------------------------------------------------------


def test_a_series_assignment_covers_existing_and_later_synced_occurrences(store: Store) -> None:
    world = World(store)
    client = create_client(store, world.therapist)
    world.weekly("weekly@test", MONDAY, 4)
    world.sync()
    world.deliver_outbox()  # nothing to do yet: no client has this series
    assert list_sessions(store, world.therapist) == []

    # From the second instance on: the first one stays unassigned.
    second = MONDAY + timedelta(weeks=1)
    result = assign_series(store, world.therapist, world.connection, "weekly@test", client.code, from_start=second)
    assert result.sessions_assigned == 3
    assert _sessions_by_start(world) == {second + timedelta(weeks=i): (client.code, "series") for i in range(3)}

    # A later sync adds instances (the therapist extended the series): the outbox carries them in.
    world.weekly("weekly@test", MONDAY + timedelta(weeks=4), 2)
    world.put("other@test", MONDAY + timedelta(days=1))
    world.sync()
    assert world.deliver_outbox() == 2
    assert _sessions_by_start(world) == {second + timedelta(weeks=i): (client.code, "series") for i in range(5)}
    # Delivered again (at least once): nothing changes.
    world.outbox_seen = 0
    assert world.deliver_outbox() == 0
    assert len(list_sessions(store, world.therapist)) == 5


def test_a_newer_series_assignment_hands_the_slot_over_from_its_start(store: Store) -> None:
    world = World(store)
    first, second = create_client(store, world.therapist), create_client(store, world.therapist)
    world.weekly("slot@test", MONDAY, 4)
    world.sync()
    assign_series(store, world.therapist, world.connection, "slot@test", first.code, from_start=MONDAY)
    handover = MONDAY + timedelta(weeks=2)
    assign_series(store, world.therapist, world.connection, "slot@test", second.code, from_start=handover)
    world.weekly("slot@test", MONDAY + timedelta(weeks=4), 1)
    world.sync()
    world.deliver_outbox()
    codes = [s.client_code for s in list_sessions(store, world.therapist)]
    assert codes == [first.code, first.code, second.code, second.code, second.code]
    # Assigning the same again (a command run twice) reuses the assignment in force.
    again = assign_series(store, world.therapist, world.connection, "slot@test", second.code, from_start=handover)
    later = assign_series(
        store, world.therapist, world.connection, "slot@test", second.code, from_start=handover + timedelta(days=1)
    )
    assert again.id == later.id and later.from_start == handover
    with store.session() as session:
        assert len(session.scalars(select(SeriesAssignment)).all()) == 2


def test_assign_event_resolves_uids_occurrences_and_single_events(store: Store) -> None:
    world = World(store)
    client = create_client(store, world.therapist)
    world.weekly("weekly@test", MONDAY, 3)
    past = datetime(2020, 3, 2, 9, tzinfo=UTC)
    world.put("single@test", past, conference_url=ZOOM)
    world.sync()

    # A single event is assigned as such, even in the past ("from now on" would skip it).
    single = assign_event(store, world.therapist, "single@test", client.code)
    assert single.session is not None and single.series is None
    assert (single.session.start, single.session.source, single.session.modality) == (
        past,
        SessionSource.MANUAL,
        Modality.ONLINE,
    )
    # One occurrence of a series, by its original start.
    one = assign_event(
        store, world.therapist, "weekly@test", client.code, occurrence=MONDAY + timedelta(weeks=1), modality="in_person"
    )
    assert one.session is not None and one.session.recurrence_id == recurrence_id_for(MONDAY + timedelta(weeks=1))
    assert one.session.modality is Modality.IN_PERSON
    # The whole series from an instant on; the manual one stays manual.
    series = assign_event(store, world.therapist, "weekly@test", client.code, from_start=MONDAY)
    assert series.series is not None and series.series.sessions_assigned == 2
    sources = [s.source.value for s in list_sessions(store, world.therapist) if s.uid == "weekly@test"]
    assert sources == ["series", "manual", "series"]

    with pytest.raises(UnknownClient, match="unknown client code"):
        assign_event(store, world.therapist, "weekly@test", "ZZZZ")
    with pytest.raises(UnknownEvent, match="nope@test"):
        assign_event(store, world.therapist, "nope@test", client.code)
    with pytest.raises(OccurrenceNotFound):
        assign_event(store, world.therapist, "weekly@test", client.code, occurrence=MONDAY + timedelta(days=1))


def test_find_occurrence_by_original_or_current_start_and_ambiguous_uids(store: Store) -> None:
    world = World(store)
    world.weekly("weekly@test", MONDAY, 2)
    moved_key = OccurrenceKey("weekly@test", recurrence_id_for(MONDAY + timedelta(weeks=1)))
    moved_to = MONDAY + timedelta(weeks=1, days=1)
    world.calendar.put(_occ(moved_key, moved_to))
    world.put("away@test", datetime(2030, 2, 1, tzinfo=UTC), all_day=True)
    world.sync()

    by_original = find_occurrence(store, world.therapist, "weekly@test", MONDAY + timedelta(weeks=1))
    by_current = find_occurrence(store, world.therapist, "weekly@test", moved_to)
    assert by_original == by_current
    assert find_occurrence(store, world.therapist, "away@test", date(2030, 2, 1))

    # The same calendar connected twice: the UID is ambiguous until a connection is named.
    twin = add_connection(store, world.therapist, "memory", "twin", {"calendar": "twin"})
    sync_connection(store, twin, MemoryProvider(world.calendar))
    with pytest.raises(AmbiguousEvent) as ambiguous:
        find_series(store, world.therapist, "weekly@test")
    assert ambiguous.value.connections == ("twin", "work")
    assert find_series(store, world.therapist, "weekly@test", connection="twin") == twin
    assert find_series(store, world.therapist, "weekly@test", connection=str(world.connection)) == world.connection
    with pytest.raises(UnknownEvent):
        find_series(store, world.therapist, "weekly@test", connection="nope")


# -- the attendee rule and precedence -----------------------------------------------------------


def test_the_attendee_rule_assigns_by_e_mail_both_ways_round(store: Store) -> None:
    world = World(store)
    # An event mirrored before the client existed...
    world.put("before@test", MONDAY, attendees=("therapist@alliance.test", "mailto:Anna.Example@EXAMPLE.org"))
    world.put("unrelated@test", MONDAY + timedelta(hours=2), attendees=("someone@example.org",))
    world.sync()
    world.deliver_outbox()
    anna = create_client(store, world.therapist, email="anna.example@example.org")
    # ...becomes a session when the client is created with that e-mail.
    assert _sessions_by_start(world) == {MONDAY: (anna.code, "rule")}
    # An event synced afterwards arrives through the outbox.
    world.put("after@test", MONDAY + timedelta(days=1), attendees=(" ANNA.example@example.org ",))
    world.sync()
    assert world.deliver_outbox() == 1
    assert _sessions_by_start(world) == {
        MONDAY: (anna.code, "rule"),
        MONDAY + timedelta(days=1): (anna.code, "rule"),
    }
    # An edit that adds the client to an existing event is picked up too (occurrence.updated).
    world.put(
        "unrelated@test", MONDAY + timedelta(hours=2), attendees=("someone@example.org", "anna.example@example.org")
    )
    world.sync()
    assert world.deliver_outbox() == 1


def test_the_attendee_rule_skips_shared_e_mails_and_archived_clients(store: Store) -> None:
    world = World(store)
    create_client(store, world.therapist, email="family@example.org")
    create_client(store, world.therapist, email="family@example.org")
    gone = create_client(store, world.therapist, email="gone@example.org")
    archive_client(store, world.therapist, gone.code)
    world.put("couple@test", MONDAY, attendees=("family@example.org",))
    world.put("gone@test", MONDAY + timedelta(days=1), attendees=("gone@example.org",))
    world.sync()
    world.deliver_outbox()
    assert list_sessions(store, world.therapist) == []
    # Restoring the client applies the rule to what is already mirrored.
    archive_client(store, world.therapist, gone.code, archived=False)
    assert _sessions_by_start(world) == {MONDAY + timedelta(days=1): (gone.code, "rule")}


def test_manual_beats_series_and_series_beats_rule(store: Store) -> None:
    world = World(store)
    anna = create_client(store, world.therapist, email="anna@example.org")
    bert = create_client(store, world.therapist)
    keys = world.weekly("weekly@test", MONDAY, 3, attendees=("anna@example.org",))
    world.sync()
    world.deliver_outbox()
    assert set(_sessions_by_start(world).values()) == {(anna.code, "rule")}

    first = find_occurrence(store, world.therapist, "weekly@test", MONDAY)
    rule_session = session_for_occurrence(store, world.therapist, first)
    assert rule_session is not None
    manual = assign_occurrence(store, world.therapist, first, bert.code)
    assert (manual.id, manual.client_code, manual.source) == (rule_session.id, bert.code, SessionSource.MANUAL)

    # The series goes to anna explicitly: the rule sessions become series ones; the manual one stays.
    assign_series(store, world.therapist, world.connection, "weekly@test", anna.code, from_start=MONDAY)
    assert _sessions_by_start(world) == {
        MONDAY: (bert.code, "manual"),
        MONDAY + timedelta(weeks=1): (anna.code, "series"),
        MONDAY + timedelta(weeks=2): (anna.code, "series"),
    }
    # Rules re-applied (any event, any number of times) never undo the therapist's choices.
    apply_rules(store, [first])
    world.calendar.put(_occ(keys[0], MONDAY, title="edited", attendees=("anna@example.org",)))
    world.sync()
    world.deliver_outbox()
    assert _sessions_by_start(world)[MONDAY] == (bert.code, "manual")

    # A series assigned to bert from week 2 on: series beats series by recency, rule never beats series.
    assign_series(store, world.therapist, world.connection, "weekly@test", bert.code, from_start=keys_start(keys[2]))
    assert _sessions_by_start(world)[MONDAY + timedelta(weeks=2)] == (bert.code, "series")


def keys_start(key: OccurrenceKey) -> datetime:
    return datetime.fromisoformat(key.recurrence_id)


# -- identity across syncs ----------------------------------------------------------------------


def test_a_session_survives_a_reschedule_a_resync_and_a_provider_id_change(store: Store) -> None:
    world = World(store)
    client = create_client(store, world.therapist)
    key = world.put("one@test", MONDAY, provider_id="p-1")
    world.sync()
    occurrence = find_occurrence(store, world.therapist, "one@test", MONDAY)
    session = assign_occurrence(store, world.therapist, occurrence, client.code)

    moved = MONDAY + timedelta(days=2, hours=1)
    world.calendar.put(_occ(key, moved, provider_id="p-2"))
    world.sync()
    world.deliver_outbox()
    [after_move] = list_sessions(store, world.therapist)
    assert (after_move.id, after_move.start, after_move.end) == (session.id, moved, moved + timedelta(minutes=50))

    # The provider forgets our cursor: a full listing re-syncs everything; the session is the same row.
    world.calendar.expire_cursors()
    world.sync()
    world.deliver_outbox()
    [after_resync] = list_sessions(store, world.therapist)
    assert (after_resync.id, after_resync.start, after_resync.source) == (session.id, moved, SessionSource.MANUAL)


def test_a_cancelled_occurrence_keeps_its_session_with_the_status_visible(store: Store) -> None:
    world = World(store)
    client = create_client(store, world.therapist)
    keys = world.weekly("weekly@test", MONDAY, 3)
    world.sync()
    assign_series(store, world.therapist, world.connection, "weekly@test", client.code, from_start=MONDAY)
    before = {s.start: s.id for s in list_sessions(store, world.therapist)}

    world.calendar.delete(keys[1])
    world.sync()
    world.deliver_outbox()
    statuses = {s.start: (s.id, s.status) for s in list_sessions(store, world.therapist)}
    assert statuses[MONDAY + timedelta(weeks=1)] == (before[MONDAY + timedelta(weeks=1)], Status.CANCELLED)
    live = list_sessions(store, world.therapist, include_cancelled=False)
    assert [s.start for s in live] == [MONDAY, MONDAY + timedelta(weeks=2)]

    # Restored at the source: the same session, confirmed again.
    world.put("weekly@test", MONDAY + timedelta(weeks=1), recurring=True)
    world.sync()
    world.deliver_outbox()
    restored = {s.start: (s.id, s.status) for s in list_sessions(store, world.therapist)}
    assert restored[MONDAY + timedelta(weeks=1)] == (before[MONDAY + timedelta(weeks=1)], Status.CONFIRMED)


# -- modality -----------------------------------------------------------------------------------


def test_modality_defaults_from_the_client_then_from_the_video_link(store: Store) -> None:
    world = World(store)
    plain = create_client(store, world.therapist)
    in_person = create_client(store, world.therapist, modality="in_person")
    online = create_client(store, world.therapist, modality="online")
    video = world.put("video@test", MONDAY, location=ZOOM)
    world.put("room@test", MONDAY + timedelta(days=1), location="Room 3")
    world.put("video2@test", MONDAY + timedelta(days=2), description=f"Join: {ZOOM}")
    world.put("room2@test", MONDAY + timedelta(days=3))
    world.sync()

    def modality(uid: str, code: str) -> Modality:
        occurrence = find_occurrence(store, world.therapist, uid, _start_of(world, uid))
        return assign_occurrence(store, world.therapist, occurrence, code).modality

    assert modality("video@test", plain.code) is Modality.ONLINE
    assert modality("room@test", plain.code) is Modality.IN_PERSON
    assert modality("video2@test", in_person.code) is Modality.IN_PERSON  # the client's preference wins
    assert modality("room2@test", online.code) is Modality.ONLINE
    # Reassigning to another client re-derives it; an explicit choice overrides.
    assert modality("video2@test", plain.code) is Modality.ONLINE
    session = session_for_occurrence(
        store, world.therapist, find_occurrence(store, world.therapist, video.ical_uid, MONDAY)
    )
    assert session is not None
    assert set_session_modality(store, world.therapist, session.id, "in person").modality is Modality.IN_PERSON


def _start_of(world: World, uid: str) -> datetime:
    return next(o.start for k, o in world.calendar.items.items() if k.ical_uid == uid)


# -- therapist scoping --------------------------------------------------------------------------


def test_a_therapist_cannot_see_or_assign_another_therapists_clients_or_events(store: Store) -> None:
    a = World(store, "a@alliance.test", "a-cal")
    b = World(store, "b@alliance.test", "b-cal")
    a_client = create_client(store, a.therapist, email="shared@example.org", code="A2A2")
    b_client = create_client(store, b.therapist, email="shared@example.org", code="B3B3")
    a.put("a-event@test", MONDAY, attendees=("shared@example.org",))
    a.weekly("a-weekly@test", MONDAY, 2)
    a.sync()
    a.deliver_outbox()
    [a_session] = list_sessions(store, a.therapist)
    assert a_session.client_code == a_client.code  # b's client with the same e-mail is not considered

    assert [c.code for c in list_clients(store, b.therapist)] == [b_client.code]
    assert list_sessions(store, b.therapist) == []
    with pytest.raises(UnknownClient):
        get_client(store, b.therapist, a_client.code)
    with pytest.raises(UnknownClient):
        list_sessions(store, b.therapist, client_code=a_client.code)
    with pytest.raises(UnknownClient):
        assign_event(store, b.therapist, "a-weekly@test", a_client.code)
    with pytest.raises(UnknownEvent):
        assign_event(store, b.therapist, "a-weekly@test", b_client.code)
    with pytest.raises(UnknownEvent):
        assign_series(store, b.therapist, a.connection, "a-weekly@test", b_client.code)
    with pytest.raises(OccurrenceNotFound):
        assign_occurrence(store, b.therapist, a_session.occurrence_id, b_client.code)
    with pytest.raises(UnknownClient):
        assign_event(store, a.therapist, "a-weekly@test", b_client.code)  # a's own event, b's client
    assert session_for_occurrence(store, b.therapist, a_session.occurrence_id) is None
    assert apply_rules(store, [a_session.occurrence_id], therapist_id=b.therapist) == 0


# -- privacy in logs ----------------------------------------------------------------------------


def test_no_log_line_names_a_client(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # Alliance's own loggers (SQL echo is the operator's choice and off by default).
    caplog.set_level(logging.DEBUG, logger="core")
    world = World(store)
    client = create_client(
        store, world.therapist, name=SECRETS["name"], email=SECRETS["email"], phone=SECRETS["phone"], code="K7Q2"
    )
    other = create_client(store, world.therapist, email="family@example.org", code="M3X9")
    create_client(store, world.therapist, email="family@example.org")
    world.put("rule@test", MONDAY, attendees=(SECRETS["email"],))
    world.put("shared@test", MONDAY + timedelta(days=1), attendees=("family@example.org",))
    world.weekly("weekly@test", MONDAY, 2)
    world.sync()
    world.deliver_outbox()
    assign_event(store, world.therapist, "weekly@test", other.code, from_start=MONDAY)
    update_client(store, world.therapist, client.code, email="new.address@example.org")
    archive_client(store, world.therapist, client.code)
    assert caplog.records, "the service logs what it does (by id)"
    for forbidden in (*SECRETS.values(), "family@example.org", "new.address", client.code, other.code):
        assert forbidden not in caplog.text


# -- properties ---------------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=12), st.randoms(use_true_random=False))
def test_generated_codes_are_in_the_alphabet_and_normal(length: int, rng: random.Random) -> None:
    code = generate_code(length, rng.choice)
    assert len(code) == length and set(code) <= set(ALPHABET)
    assert normalise_code(code) == code
    assert normalise_code(f" {code.lower()} ") == code


@given(st.text(max_size=14))
def test_normalised_codes_are_in_the_alphabet(text: str) -> None:
    code = normalise_code(text)
    assert code is None or (set(code) <= set(ALPHABET) and normalise_code(code) == code)


_LOCAL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._+-", min_size=1, max_size=20)
_DOMAIN = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12), min_size=2, max_size=4
)


@given(_LOCAL, _DOMAIN, st.sampled_from(["", "mailto:", "MAILTO:", "Name <"]), st.sampled_from(["", " ", "\t"]))
def test_email_normalisation_ignores_case_prefixes_and_spacing(
    local: str, labels: list[str], prefix: str, space: str
) -> None:
    address = f"{local}@{'.'.join(labels)}"
    decorated = prefix + space + "".join(c.upper() if i % 2 else c for i, c in enumerate(address)) + space
    if prefix == "Name <":
        decorated += ">"
    assert normalise_email(decorated) == normalise_email(address)


@given(st.text(max_size=40))
def test_email_normalisation_is_idempotent_and_total(text: str) -> None:
    once = normalise_email(text)
    assert once is None or (once.count("@") == 1 and normalise_email(once) == once)


# -- session events -----------------------------------------------------------------------------


def _session_events(store: Store) -> list[tuple[str, int | None, dict[str, object]]]:
    with store.session() as session:
        rows = session.execute(
            select(OutboxEvent.kind, OutboxEvent.occurrence_id, OutboxEvent.payload)
            .where(OutboxEvent.kind.like("session.%"))
            .order_by(OutboxEvent.id)
        ).all()
    return [(kind, occ, dict(payload)) for kind, occ, payload in rows]


def test_session_changes_reach_the_outbox_with_ids_only(store: Store) -> None:
    world = World(store)
    anna = create_client(store, world.therapist, name="Anna Example", email="anna@example.org")
    bert = create_client(store, world.therapist)
    world.put("one@test", MONDAY, title="Anna Example intake")
    world.sync()
    first = find_occurrence(store, world.therapist, "one@test", MONDAY)

    made = assign_occurrence(store, world.therapist, first, anna.code)
    assert _session_events(store) == [
        (
            "session.assigned",
            first,
            {
                "session_id": made.id,
                "client_id": made_client_id(store, anna.code, world),
                "modality": made.modality.value,
            },
        )
    ]
    # Assigning the same client again changes nothing and says nothing.
    assign_occurrence(store, world.therapist, first, anna.code)
    assert len(_session_events(store)) == 1

    other = Modality.IN_PERSON if made.modality is Modality.ONLINE else Modality.ONLINE
    set_session_modality(store, world.therapist, made.id, made.modality)  # no change, no event
    set_session_modality(store, world.therapist, made.id, other)
    assign_occurrence(store, world.therapist, first, bert.code)
    kinds = [(kind, payload["session_id"]) for kind, _occ, payload in _session_events(store)]
    assert kinds == [
        ("session.assigned", made.id),
        ("session.modality_changed", made.id),
        ("session.assigned", made.id),
    ]
    dump = repr(_session_events(store))
    assert "Anna" not in dump and "anna@" not in dump and anna.code not in dump


def made_client_id(store: Store, code: str, world: World) -> int:
    with store.session() as session:
        found = session.scalar(select(Client.id).where(Client.therapist_id == world.therapist, Client.code == code))
    assert found is not None
    return found


def test_rule_and_series_sessions_announce_themselves_once(store: Store) -> None:
    world = World(store)
    anna = create_client(store, world.therapist, email="anna@example.org")
    world.weekly("weekly@test", MONDAY, 3, attendees=("anna@example.org",))
    world.sync()
    world.deliver_outbox()
    world.deliver_outbox()
    assert [kind for kind, _o, _p in _session_events(store)] == ["session.assigned"] * 3
    assign_series(store, world.therapist, world.connection, "weekly@test", anna.code, from_start=MONDAY)
    # Same client, new source: not a new assignment for anyone downstream.
    assert [kind for kind, _o, _p in _session_events(store)] == ["session.assigned"] * 3
