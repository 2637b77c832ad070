"""Write-back of a session's join link to Outlook through MSAL, Graph and the emulator: If-Match on the
changeKey, a real 412 when the therapist edits at the same moment, the therapist's own Teams link
kept, and the echo of Alliance's own write recognised by the sync (no domain event)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from core.mirror import add_connection, ensure_therapist, list_occurrences
from core.store import OutboxEvent, Store
from core.sync import sync_connection
from integrations.base import Capability
from integrations.base.writeback import JoinLinkWriter, TargetGone
from integrations.outlook import OutlookProvider
from integrations.outlook.html_block import join_paragraph
from integrations.outlook.mapping import LABEL, own_text
from integrations.outlook.writeback import PROPERTY_ID
from sandbox.outlook.bodies import html_to_text
from tests.integrations.outlook.world import OutlookWorld, at, timed

LINK = "https://alliance.example.org/j/Qm9vazJ3cmFuZG9tdG9rZW4"
EVENTS = "/v1.0/me/events/"


def _patches(outlook: OutlookWorld) -> list[Any]:
    return outlook.state.requests(EVENTS, "PATCH")


def _event(outlook: OutlookWorld, event_id: str) -> Any:
    return outlook.state.events[event_id]


def _text(event: Any) -> str:
    """The event's body as a text read shows it (Graph renders an HTML body as text)."""
    return html_to_text(event.body) if event.body_type == "html" else str(event.body)


def _outbox_kinds(store: Store) -> list[str]:
    with store.session() as session:
        return list(session.scalars(select(OutboxEvent.kind).order_by(OutboxEvent.id)))


def test_write_back_is_declared_and_implemented() -> None:
    assert Capability.WRITE_BACK in OutlookProvider.capabilities
    assert Capability.READ_ONLY not in OutlookProvider.capabilities
    assert issubclass(OutlookProvider, JoinLinkWriter)


def test_the_link_is_written_after_the_therapists_text_with_if_match_and_a_marker(outlook: OutlookWorld) -> None:
    made = outlook.seed(
        {"subject": "Anna Example", "body": {"contentType": "text", "content": "Intake."}, **timed(at(2))}
    )
    before = _event(outlook, made["id"])
    etag_before, start_before = f'W/"{before.change_key}"', before.start

    assert outlook.provider().write_join_link(made["id"], LINK) is True

    after = _event(outlook, made["id"])
    # Read as HTML (Graph's default), written back as HTML: the therapist's text, then the block.
    assert after.body_type == "html" and _text(after) == f"Intake.\n{LABEL}{LINK}"
    assert after.extended == {PROPERTY_ID: LINK}
    (patch,) = _patches(outlook)
    assert patch.headers["if-match"] == etag_before and patch.status == 200
    # Only the body block and the marker changed: subject (a client's name here) and times as they were.
    assert (after.subject, after.start) == ("Anna Example", start_before)
    assert f'W/"{after.change_key}"' != etag_before  # Graph saw a change


def test_writing_the_same_link_again_sends_nothing_and_a_new_link_replaces_the_block(outlook: OutlookWorld) -> None:
    made = outlook.seed({"subject": "Session", **timed(at(2))})
    provider = outlook.provider()
    assert provider.write_join_link(made["id"], LINK) is True
    assert provider.write_join_link(made["id"], LINK) is False
    assert len(_patches(outlook)) == 1
    other = "https://alliance.example.org/j/b3RoZXJyYW5kb210b2tlbg"
    assert provider.write_join_link(made["id"], other) is True
    after = _event(outlook, made["id"])
    assert _text(after) == f"{LABEL}{other}"  # no text of the therapist's: the block alone, once
    assert after.body.count(LABEL) == 1
    assert after.extended[PROPERTY_ID] == other


def test_an_event_with_its_own_teams_meeting_keeps_it_as_the_video_link(
    outlook: OutlookWorld, sqlite_store: Store
) -> None:
    made = outlook.seed({"subject": "Session", "isOnlineMeeting": True, **timed(at(2))})
    teams = _event(outlook, made["id"]).join_url
    assert teams and teams.startswith("https://teams.microsoft.com/")

    assert outlook.provider().write_join_link(made["id"], LINK) is False

    assert _patches(outlook) == [] and _event(outlook, made["id"]).body == ""
    conn = add_connection(sqlite_store, ensure_therapist(sqlite_store, "ana@example.org"), "outlook", "outlook", {})
    sync_connection(sqlite_store, conn, outlook.provider())
    (occurrence,) = list_occurrences(sqlite_store)
    assert occurrence.video_url == teams


def test_a_412_rereads_the_event_and_keeps_the_therapists_concurrent_edit(outlook: OutlookWorld) -> None:
    made = outlook.seed({"subject": "Session", "body": {"contentType": "text", "content": "Old note"}, **timed(at(2))})
    provider = outlook.provider()
    provider.tokens.access_token()  # signed in before Graph slows down
    # Every Graph request now takes a moment; while the PATCH waits, the therapist edits the event
    # in Outlook: the PATCH's If-Match names the old changeKey and Graph answers 412.
    outlook.state.settings.latency = 0.5
    outcome: list[Any] = []
    writer = threading.Thread(target=lambda: outcome.append(provider.write_join_link(made["id"], LINK)))
    writer.start()
    deadline = time.monotonic() + 30
    while not _patches(outlook):
        assert time.monotonic() < deadline, "the PATCH never came"
        time.sleep(0.005)
    outlook.state.update_event(made["id"], {"body": {"contentType": "text", "content": "New note"}})
    writer.join(30)
    outlook.state.settings.latency = 0.0

    assert outcome == [True]
    assert [p.status for p in _patches(outlook)] == [412, 200]
    assert len(outlook.state.requests(EVENTS + made["id"], "GET")) == 2  # read again after the 412
    assert _text(_event(outlook, made["id"])) == f"New note\n{LABEL}{LINK}"


def test_the_echo_of_the_write_is_no_change_but_a_therapists_edit_is(
    outlook: OutlookWorld, sqlite_store: Store
) -> None:
    made = outlook.seed({"subject": "Session", "body": {"contentType": "text", "content": "Room 2"}, **timed(at(2))})
    conn = add_connection(sqlite_store, ensure_therapist(sqlite_store, "ana@example.org"), "outlook", "outlook", {})
    sync_connection(sqlite_store, conn, outlook.provider())
    kinds = _outbox_kinds(sqlite_store)

    assert outlook.provider().write_join_link(made["id"], LINK) is True
    echo = sync_connection(sqlite_store, conn, outlook.provider())

    assert echo.changes == 0 and _outbox_kinds(sqlite_store) == kinds
    (occurrence,) = list_occurrences(sqlite_store)
    assert occurrence.description == "Room 2"

    outlook.state.update_event(made["id"], {"body": {"contentType": "text", "content": f"Room 3\n\n{LABEL}{LINK}"}})
    edit = sync_connection(sqlite_store, conn, outlook.provider())
    assert edit.changes == 1
    (occurrence,) = list_occurrences(sqlite_store)
    assert occurrence.description == "Room 3"


@pytest.mark.parametrize("bad", ["", "not a link", f"{LINK} Anna Example", f"{LINK}\nDiagnosis", "javascript:alert(1)"])
def test_anything_but_one_link_is_refused_before_any_request(outlook: OutlookWorld, bad: str) -> None:
    made = outlook.seed({"subject": "Session", **timed(at(2))})
    provider = outlook.provider()
    with pytest.raises(ValueError, match="one http"):
        provider.write_join_link(made["id"], bad)
    assert outlook.state.requests(EVENTS) == []


def test_own_text_leaves_out_only_alliances_trailing_block() -> None:
    assert own_text(f"Room 2\n\n{LABEL}{LINK}") == "Room 2"
    assert own_text(f"Room 2 {LABEL}{LINK} ") == "Room 2"  # an HTML body's text preview
    assert own_text(f"{LABEL}{LINK}\n\nRoom 2") == f"{LABEL}{LINK}\n\nRoom 2"  # not at the end: the therapist's
    assert own_text("Video: https://zoom.us/j/1") == "Video: https://zoom.us/j/1"


def test_removing_the_link_restores_the_therapists_text_and_a_deleted_event_is_reported_gone(
    outlook: OutlookWorld,
) -> None:
    made = outlook.seed({"subject": "Session", "body": {"contentType": "text", "content": "Room 2"}, **timed(at(2))})
    provider = outlook.provider()
    assert provider.write_join_link(made["id"], LINK) is True

    assert provider.remove_join_link(made["id"]) is True
    after = _event(outlook, made["id"])
    assert _text(after) == "Room 2" and after.extended[PROPERTY_ID] == ""
    assert provider.remove_join_link(made["id"]) is False  # nothing left to take off
    assert [p.headers.get("if-match", "") != "" for p in _patches(outlook)] == [True, True]

    outlook.state.delete_event(made["id"])
    with pytest.raises(TargetGone):
        provider.write_join_link(made["id"], LINK)


THERAPIST_HTML = (
    '<html><head><style>p { margin: 0 }</style></head><body dir="ltr">'
    '<p class="MsoNormal">Bring the <b>intake form</b> &amp; ID.</p>'
    "<div><ul><li>Room 2 &lt;upstairs&gt;</li></ul></div><!-- kept -->"
    "</body></html>"
)


def test_an_html_body_round_trip_keeps_the_therapists_html_byte_for_byte(
    outlook: OutlookWorld, sqlite_store: Store
) -> None:
    made = outlook.seed(
        {"subject": "Session", "body": {"contentType": "html", "content": THERAPIST_HTML}, **timed(at(2))}
    )
    conn = add_connection(sqlite_store, ensure_therapist(sqlite_store, "ana@example.org"), "outlook", "outlook", {})
    sync_connection(sqlite_store, conn, outlook.provider())
    kinds = _outbox_kinds(sqlite_store)
    (occurrence,) = list_occurrences(sqlite_store)
    described = occurrence.description
    assert described == "Bring the intake form & ID.\nRoom 2 <upstairs>"
    link = "https://alliance.example.org/j/abc?x=1&y=2"  # an ampersand: escaped in HTML
    provider = outlook.provider()

    # Added: one paragraph before </body>, the URL escaped; everything else exactly as it was.
    assert provider.write_join_link(made["id"], link) is True
    written = _event(outlook, made["id"])
    assert written.body_type == "html" and 'href="https://alliance.example.org/j/abc?x=1&amp;y=2"' in written.body
    assert written.body == THERAPIST_HTML.replace("</body>", join_paragraph(link) + "</body>")
    assert _text(written).endswith(f"{LABEL}{link}")

    # Kept on echo: the sync sees no change, and writing the same link again sends nothing.
    echo = sync_connection(sqlite_store, conn, provider)
    assert echo.changes == 0 and _outbox_kinds(sqlite_store) == kinds
    assert list_occurrences(sqlite_store)[0].description == described
    assert provider.write_join_link(made["id"], link) is False and len(_patches(outlook)) == 1

    # Removed when the meeting goes: the therapist's HTML is back, byte for byte.
    assert provider.remove_join_link(made["id"]) is True
    assert _event(outlook, made["id"]).body == THERAPIST_HTML
    assert provider.remove_join_link(made["id"]) is False


def test_a_paragraph_the_therapist_wrote_around_a_link_is_not_taken_for_alliances(outlook: OutlookWorld) -> None:
    own = f"<p>{LABEL}see https://zoom.us/j/1 first</p><p>Old: {LABEL}</p>"
    made = outlook.seed({"subject": "Session", "body": {"contentType": "html", "content": own}, **timed(at(2))})
    provider = outlook.provider()
    assert provider.write_join_link(made["id"], LINK) is True
    assert provider.remove_join_link(made["id"]) is True
    body = _event(outlook, made["id"]).body
    assert own in body and LINK not in body
