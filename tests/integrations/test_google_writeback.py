"""Write-back of a session's join link to Google through the real client library and the emulator:
If-Match on the etag, a real 412 when the therapist edits at the same moment, and the echo of
Alliance's own write recognised by the sync (no domain event)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from core.mirror import add_connection, ensure_therapist, list_occurrences
from core.store import OutboxEvent, Store
from core.sync import sync_connection
from integrations.google.writeback import LABEL, PROPERTY, WriteConflict, write_join_link
from tests.integrations.google_world import EVENTS_PATH, MADRID, GoogleWorld, at, timed

LINK = "https://alliance.example.org/j/Qm9vazJ3cmFuZG9tdG9rZW4"


def _patches(google: GoogleWorld) -> list[dict[str, Any]]:
    return google.state.requests(EVENTS_PATH, "PATCH")


def _outbox_kinds(store: Store) -> list[str]:
    with store.session() as session:
        return list(session.scalars(select(OutboxEvent.kind).order_by(OutboxEvent.id)))


def test_the_link_is_written_after_the_therapists_text_with_if_match_and_a_private_marker(
    google: GoogleWorld,
) -> None:
    event = google.seed({"summary": "Session", "description": "Bring the intake form.", **timed(at(2), tz=MADRID)})
    before = google.state.get_event("primary", event["id"])

    assert google.provider().write_join_link(event["id"], LINK) is True

    after = google.state.get_event("primary", event["id"])
    assert after["description"] == f"Bring the intake form.\n\n{LABEL}{LINK}"
    assert after["extendedProperties"]["private"] == {PROPERTY: LINK}
    assert "shared" not in after["extendedProperties"]  # attendees' copies never see the marker
    assert after["etag"] != before["etag"]
    (patch,) = _patches(google)
    assert patch["if_match"] == before["etag"] and patch["status"] == 200
    assert patch["query"]["sendUpdates"] == ["none"]  # no e-mail to attendees
    # What Alliance added is the fixed label and the link, nothing else.
    assert after["description"].removeprefix(before["description"]) == f"\n\n{LABEL}{LINK}"
    assert (after["summary"], after["start"], after["end"]) == (before["summary"], before["start"], before["end"])


def test_writing_the_same_link_again_sends_nothing_and_a_new_link_replaces_the_block(google: GoogleWorld) -> None:
    event = google.seed({"summary": "Session", **timed(at(2), tz=MADRID)})
    provider = google.provider()
    assert provider.write_join_link(event["id"], LINK) is True
    assert provider.write_join_link(event["id"], LINK) is False
    assert len(_patches(google)) == 1
    other = "https://alliance.example.org/j/b3RoZXJyYW5kb210b2tlbg"
    assert provider.write_join_link(event["id"], other) is True
    after = google.state.get_event("primary", event["id"])
    assert after["description"] == f"{LABEL}{other}"  # no text of the therapist's: the block alone
    assert after["extendedProperties"]["private"][PROPERTY] == other


def test_a_412_rereads_the_event_and_keeps_the_therapists_concurrent_edit(google: GoogleWorld) -> None:
    event = google.seed({"summary": "Session", "description": "Old note", **timed(at(2), tz=MADRID)})
    # The PATCH is held for a moment, during which the therapist edits the event in Google:
    # the PATCH then carries a stale etag and Google answers 412 conditionNotMet.
    google.state.inject_fault(None, path=f"{EVENTS_PATH}/{event['id']}", method="PATCH", delay=1.0)
    outcome: list[Any] = []
    writer = threading.Thread(target=lambda: outcome.append(google.provider().write_join_link(event["id"], LINK)))
    writer.start()
    deadline = time.monotonic() + 30
    while not _patches(google):
        assert time.monotonic() < deadline, "the PATCH never came"
        time.sleep(0.005)
    google.state.edit_event("primary", event["id"], {"description": "New note from the therapist"})
    writer.join(30)

    assert outcome == [True]
    assert [p["status"] for p in _patches(google)] == [412, 200]
    assert len(google.state.requests(f"{EVENTS_PATH}/{event['id']}", "GET")) == 2  # read again after the 412
    after = google.state.get_event("primary", event["id"])
    assert after["description"] == f"New note from the therapist\n\n{LABEL}{LINK}"


def test_an_event_that_keeps_changing_gives_a_clear_conflict(google: GoogleWorld) -> None:
    event = google.seed({"summary": "Session", **timed(at(2), tz=MADRID)})
    google.state.inject_fault("conditionNotMet", status=412, path=EVENTS_PATH, method="PATCH", count=-1)
    with pytest.raises(WriteConflict, match="kept changing"):
        google.provider().write_join_link(event["id"], LINK)
    assert "description" not in google.state.get_event("primary", event["id"])


@pytest.mark.parametrize("bad", ["", "not a link", f"{LINK} Anna Example", f"{LINK}\nDiagnosis", "javascript:alert(1)"])
def test_anything_but_one_link_is_refused_before_any_request(google: GoogleWorld, bad: str) -> None:
    event = google.seed({"summary": "Session", **timed(at(2), tz=MADRID)})
    google.state.clear_request_log()
    with pytest.raises(ValueError, match="one http"):
        write_join_link(google.provider().client, "primary", event["id"], bad)
    assert google.state.requests("/calendar/v3") == []


def test_the_echo_of_alliances_write_is_no_change_but_the_therapists_next_edit_is(
    google: GoogleWorld, sqlite_store: Store
) -> None:
    event = google.seed({"summary": "Session", "description": "Room 2", **timed(at(2), tz=MADRID)})
    therapist = ensure_therapist(sqlite_store, "ana@example.org")
    connection = add_connection(sqlite_store, therapist, "google", "work", {})
    sync_connection(sqlite_store, connection, google.provider())
    assert _outbox_kinds(sqlite_store) == ["occurrence.created"]

    google.provider().write_join_link(event["id"], LINK)
    echo = sync_connection(sqlite_store, connection, google.provider())

    assert echo.pages >= 1 and echo.changes == 0  # Google listed the event again; nothing changed
    assert _outbox_kinds(sqlite_store) == ["occurrence.created"]  # no occurrence.updated
    (mirrored,) = list_occurrences(sqlite_store)
    assert mirrored.description == "Room 2"

    # The therapist's own edit of the text (the block kept) is a change as always.
    current = google.state.get_event("primary", event["id"])
    google.state.edit_event("primary", event["id"], {"description": current["description"].replace("Room 2", "Room 3")})
    sync_connection(sqlite_store, connection, google.provider())
    assert _outbox_kinds(sqlite_store) == ["occurrence.created", "occurrence.updated"]
    (mirrored,) = list_occurrences(sqlite_store)
    assert mirrored.description == "Room 3"
