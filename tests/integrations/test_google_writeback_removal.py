"""Taking Alliance's join link off a Google event (the meeting went), through the real client library
against the emulator: the therapist's text stays, a second removal sends nothing, a 412 re-reads."""

from __future__ import annotations

import pytest

from integrations.base.writeback import TargetGone
from integrations.google.writeback import LABEL, PROPERTY
from tests.integrations.google_world import EVENTS_PATH, MADRID, GoogleWorld, at, timed

LINK = "https://zoom.example.org/j/81234567890?pwd=abc"


def test_removal_restores_the_therapists_text_and_is_idempotent(google: GoogleWorld) -> None:
    event = google.seed({"summary": "Session", "description": "Room 2 if in person.", **timed(at(2), tz=MADRID)})
    provider = google.provider()
    assert provider.write_join_link(event["id"], LINK) is True
    assert provider.remove_join_link(event["id"]) is True
    after = google.state.get_event("primary", event["id"])
    assert after["description"] == "Room 2 if in person."
    assert not after["extendedProperties"]["private"].get(PROPERTY)
    patches = google.state.requests(EVENTS_PATH, "PATCH")
    assert len(patches) == 2 and all(p["if_match"] for p in patches)
    # Nothing of Alliance's left: nothing is sent.
    assert provider.remove_join_link(event["id"]) is False
    assert len(google.state.requests(EVENTS_PATH, "PATCH")) == 2


def test_an_event_alliance_never_wrote_on_is_left_alone(google: GoogleWorld) -> None:
    text = f"My own note with a link: {LABEL}{LINK}"  # looks like ours, but carries no marker
    event = google.seed({"summary": "Session", "description": text, **timed(at(2), tz=MADRID)})
    assert google.provider().remove_join_link(event["id"]) is False
    assert google.state.get_event("primary", event["id"])["description"] == text
    assert google.state.requests(EVENTS_PATH, "PATCH") == []


def test_removal_after_the_therapist_edited_meanwhile_keeps_their_edit(google: GoogleWorld) -> None:
    event = google.seed({"summary": "Session", "description": "Old", **timed(at(2), tz=MADRID)})
    provider = google.provider()
    provider.write_join_link(event["id"], LINK)
    # The therapist rewrote the text above Alliance's block in Google.
    current = google.state.get_event("primary", event["id"])
    google.state.edit_event("primary", event["id"], {"description": current["description"].replace("Old", "New plan")})
    assert provider.remove_join_link(event["id"]) is True
    assert google.state.get_event("primary", event["id"])["description"] == "New plan"


def test_a_deleted_event_is_reported_gone(google: GoogleWorld) -> None:
    event = google.seed({"summary": "Session", **timed(at(2), tz=MADRID)})
    google.state.delete_event("primary", event["id"])
    with pytest.raises(TargetGone):
        google.provider().remove_join_link(event["id"])
    with pytest.raises(TargetGone):
        google.provider().write_join_link("nosucheventid00", LINK)
