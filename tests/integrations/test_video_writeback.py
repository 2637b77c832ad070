"""The Zoom meeting Alliance makes for an online session is written onto its Google event, and
taken off again when the meeting goes: the whole chain through the real job runner, with the real
google-api-python-client and zoomus (wrapped) talking HTTP to both emulators."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from alliance.jobs import build_registry
from alliance.settings import Settings
from alliance.syncing import sync_one
from alliance.video_writeback import write_back
from core.clients import assign_occurrence, create_client, find_occurrence, set_session_modality
from core.jobs import DONE, InProcessRunner, OutboxDelivery, QueuedJob
from core.mirror import add_connection, ensure_therapist, get_connection
from core.store import OutboxEvent, Store
from core.video.service import VIDEO_LINK_CHANGED, connect_video
from core.video.views import video_links
from integrations.google.writeback import LABEL, PROPERTY
from sandbox.google import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from sandbox.zoom import DEFAULT_ACCOUNT_ID, RunningZoom, ZoomState, run_zoom_emulator
from sandbox.zoom import DEFAULT_CLIENT_ID as ZOOM_CLIENT_ID
from sandbox.zoom import DEFAULT_CLIENT_SECRET as ZOOM_CLIENT_SECRET
from sandbox.zoom import Settings as ZoomSettings
from tests.core.test_mail import Inbox, _free_port
from tests.integrations.google_world import EVENTS_PATH, MADRID, GoogleWorld, at, timed

CLIENT_NAME = "Annabel Quigley"
THERAPIST_TEXT = "Bring the intake form."


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, Controller]]:
    """A real SMTP server on loopback (aiosmtpd), as in tests/core/test_mail.py."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield inbox, controller
    finally:
        controller.stop()


@pytest.fixture
def zoom() -> Iterator[RunningZoom]:
    with run_zoom_emulator(ZoomState(ZoomSettings())) as emu:
        yield emu


class Practice:
    """A therapist with a Google calendar, a Zoom connection and a client, run by the job runner."""

    def __init__(
        self, store: Store, google: GoogleWorld, zoom: RunningZoom, home: Path, *, video: bool = True, **extra: Any
    ) -> None:
        self.store, self.google, self.zoom = store, google, zoom
        self.settings = Settings(
            **extra,
            home=home,
            google_api_url=google.emu.api_endpoint,
            google_auth_url=google.emu.authorize_url,
            google_token_url=google.emu.token_uri,
            google_client_id=DEFAULT_CLIENT_ID,
            google_client_secret=DEFAULT_CLIENT_SECRET,
            zoom_api_url=zoom.api_url,
            zoom_oauth_url=zoom.base_url,
        )
        self.therapist = ensure_therapist(store, "ana@example.org", timezone=MADRID)
        self.connection = add_connection(store, self.therapist, "google", "work", google.settings())
        self.client = create_client(store, self.therapist, name=CLIENT_NAME, modality="online").code
        self.runner = InProcessRunner(store, build_registry(self.settings))
        if video:
            self.connect_zoom()

    def connect_zoom(self) -> None:
        store, zoom = self.store, self.zoom
        connect_video(
            store,
            self.therapist,
            "zoom",
            "s2s",
            {
                "account_id": DEFAULT_ACCOUNT_ID,
                "client_id": ZOOM_CLIENT_ID,
                "client_secret": ZOOM_CLIENT_SECRET,
                "user_id": zoom.state.default_user.id,
            },
        )

    def sync(self) -> None:
        connection = get_connection(self.store, self.therapist, self.connection)
        assert connection is not None
        outcome = sync_one(self.store, self.settings, connection)
        assert outcome.error is None, outcome.error

    def run(self, now: datetime | None = None) -> None:
        """Run the jobs until nothing is left to do now."""
        for _ in range(20):
            if not self.runner.run_pending(now):
                return
        raise AssertionError("the jobs never went idle")

    def waiting_work(self) -> tuple[int, int]:
        """Outbox deliveries and queued jobs not done: what would still run, now or at a retry.

        Asked of the tables rather than of ``run_pending()``: that also runs the periodic jobs
        (the video call-events poll every 5 s), which fall due again whenever a loaded machine
        takes longer than that between two calls."""
        with self.store.session() as session:
            deliveries = session.scalar(
                select(func.count()).select_from(OutboxDelivery).where(OutboxDelivery.status != DONE)
            )
            jobs = session.scalar(select(func.count()).select_from(QueuedJob).where(QueuedJob.status != DONE))
        return deliveries or 0, jobs or 0

    def session_for(self, event: dict[str, Any]) -> int:
        start = datetime.fromisoformat(event["start"]["dateTime"])
        occurrence = find_occurrence(self.store, self.therapist, event["iCalUID"], start)
        return assign_occurrence(self.store, self.therapist, occurrence, self.client, modality="online").id

    def event(self, event_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.google.state.get_event("primary", event_id)
        return result

    def join_url(self, session_id: int) -> str | None:
        view = video_links(self.store, self.therapist, [session_id]).get(session_id)
        return view.join_url if view is not None else None

    def outbox_kinds(self) -> list[str]:
        with self.store.session() as session:
            return list(session.scalars(select(OutboxEvent.kind).order_by(OutboxEvent.id)))


@pytest.fixture
def practice(store: Store, google: GoogleWorld, zoom: RunningZoom, tmp_path: Path) -> Practice:
    return Practice(store, google, zoom, tmp_path / "home")


def _patches(google: GoogleWorld) -> list[dict[str, Any]]:
    return google.state.requests(EVENTS_PATH, "PATCH")


def test_the_meeting_link_goes_onto_the_event_and_leaves_with_the_meeting(practice: Practice) -> None:
    google = practice.google
    event = google.seed({"summary": f"Session {CLIENT_NAME}", "description": THERAPIST_TEXT, **timed(at(2), tz=MADRID)})
    practice.sync()
    session_id = practice.session_for(event)
    practice.run()

    [meeting] = practice.zoom.state.meetings.values()
    join_url = practice.join_url(session_id)
    assert join_url == meeting.join_url()
    written = practice.event(event["id"])
    # The therapist's text stays first; Alliance adds its fixed label and the link, nothing else.
    assert written["description"] == f"{THERAPIST_TEXT}\n\n{LABEL}{join_url}"
    assert written["extendedProperties"]["private"] == {PROPERTY: join_url}
    assert written["summary"] == event["summary"]
    [patch] = _patches(google)
    assert patch["if_match"] == event["etag"] and patch["status"] == 200
    # What Alliance added names nobody (the title, the therapist's own, is untouched).
    added = written["description"].removeprefix(THERAPIST_TEXT) + str(written["extendedProperties"])
    assert CLIENT_NAME not in added and "Annabel" not in added

    # The echo of its own write: the next sync changes nothing and emits no domain event.
    before = practice.outbox_kinds()
    practice.sync()
    practice.run()
    assert practice.outbox_kinds() == before
    assert len(_patches(google)) == 1

    # In person now: the meeting is deleted and its link leaves the event; the therapist's text stays.
    set_session_modality(practice.store, practice.therapist, session_id, "in_person")
    practice.run()
    assert practice.zoom.state.meetings == {}
    cleaned = practice.event(event["id"])
    assert cleaned["description"] == THERAPIST_TEXT
    assert not cleaned["extendedProperties"]["private"].get(PROPERTY)
    assert len(_patches(google)) == 2 and _patches(google)[-1]["if_match"] == written["etag"]
    assert practice.outbox_kinds().count(VIDEO_LINK_CHANGED) == 2


def test_a_cancelled_session_loses_its_meeting_and_its_event_is_left_alone(practice: Practice) -> None:
    google = practice.google
    event = google.seed({"summary": "Session", **timed(at(3), tz=MADRID)})
    practice.sync()
    practice.session_for(event)
    practice.run()
    assert len(practice.zoom.state.meetings) == 1 and len(_patches(google)) == 1

    google.state.delete_event("primary", event["id"])  # the therapist deletes the appointment
    practice.sync()
    practice.run()
    assert practice.zoom.state.meetings == {}
    # Nothing is written on a deleted event (and nothing is retried).
    assert len(_patches(google)) == 1
    assert practice.waiting_work() == (0, 0)


def test_google_quota_on_the_write_back_is_retried_later_not_lost(practice: Practice) -> None:
    google = practice.google
    event = google.seed({"summary": "Session", **timed(at(4), tz=MADRID)})
    practice.sync()
    session_id = practice.session_for(event)
    google.state.inject_fault("quotaExceeded", path=f"{EVENTS_PATH}/{event['id']}", method="PATCH")
    practice.run()
    assert PROPERTY not in (practice.event(event["id"]).get("extendedProperties") or {}).get("private", {})

    # The delivery failed and waits for its retry; once due, the link is written.
    practice.run(now=datetime.now(UTC) + timedelta(hours=2))
    assert practice.event(event["id"])["extendedProperties"]["private"][PROPERTY] == practice.join_url(session_id)


def test_a_write_google_refuses_for_good_is_not_retried(practice: Practice) -> None:
    google = practice.google
    event = google.seed({"summary": "Session", **timed(at(4), tz=MADRID)})
    practice.sync()
    session_id = practice.session_for(event)
    # Not the organizer's copy: Google refuses a description change, whatever the retries.
    google.state.inject_fault(
        "forbiddenForNonOrganizer", status=403, path=f"{EVENTS_PATH}/{event['id']}", method="PATCH", count=-1
    )
    practice.run()
    assert practice.join_url(session_id) is not None  # the session has its link in Alliance
    assert len(_patches(google)) == 1
    practice.run(now=datetime.now(UTC) + timedelta(hours=2))
    assert len(_patches(google)) == 1  # not retried


def test_write_back_of_a_session_without_a_meeting_writes_nothing(practice: Practice) -> None:
    event = practice.google.seed({"summary": "Session", **timed(at(5), tz=MADRID)})
    practice.sync()
    session_id = practice.session_for(event)
    # Straight away, before the lifecycle made a meeting: nothing of Alliance's is on the event.
    assert write_back(practice.store, practice.settings, session_id) == "unchanged"
    assert _patches(practice.google) == []


def test_the_therapist_is_told_by_e_mail_when_an_online_session_has_no_video_link(
    store: Store, google: GoogleWorld, zoom: RunningZoom, tmp_path: Path, smtp_server: tuple[Inbox, Controller]
) -> None:
    inbox, controller = smtp_server
    practice = Practice(
        store,
        google,
        zoom,
        tmp_path / "home",
        video=False,  # no Zoom account connected yet
        smtp_host="127.0.0.1",
        smtp_port=controller.port,
        smtp_security="none",
        mail_from="Appointments <appointments@practice.test>",
    )
    event = google.seed({"summary": f"Session {CLIENT_NAME}", **timed(at(2), tz=MADRID)})
    practice.sync()
    session_id = practice.session_for(event)
    practice.run()
    practice.run(now=datetime.now(UTC) + timedelta(minutes=1))  # the mail job's next round

    [mail] = inbox.messages
    assert mail["To"] == "ana@example.org"
    assert mail["Subject"] == "A session has no video link"  # neutral: no client, no therapy
    body = mail.get_content()
    assert "No Zoom account is connected" in body and "alliance connect zoom" in body
    assert CLIENT_NAME not in body and "Annabel" not in body and "Quigley" not in body
    # The session's time, in the therapist's zone.
    local = datetime.fromisoformat(event["start"]["dateTime"]).astimezone(ZoneInfo(MADRID))
    assert f"{local:%H:%M} ({MADRID})" in body

    # The hourly recheck finds the same gap: no second mail.
    practice.run(now=datetime.now(UTC) + timedelta(hours=1, minutes=5))
    assert len(inbox.messages) == 1
    # Connecting Zoom fills the gap: the meeting is made and written onto the event.
    practice.connect_zoom()
    practice.run(now=datetime.now(UTC) + timedelta(hours=2))  # the video sweep's next round
    assert len(zoom.state.meetings) == 1
    assert practice.event(event["id"])["extendedProperties"]["private"][PROPERTY] == practice.join_url(session_id)
    assert len(inbox.messages) == 1
