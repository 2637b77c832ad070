"""Who cancelled (recorded by the therapist) feeds rule R8; the client list page and the
cancellation API are scoped to the signed-in therapist (real app, both databases)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from core.accounts import create_api_token, create_therapist, set_password
from core.alerts import Attendance
from core.attendance import NotCancelled, record_cancellation
from core.client_trends import client_trend
from core.clients import UnknownSession
from core.store import Store
from core.sync import Status
from tests.portal.conftest import PASSWORD, sign_in
from tests.trends.world import Course

pytestmark = pytest.mark.anyio


class Cancelled(Course):
    """The course of tests.trends.world plus two sessions cancelled in the calendar (weeks 7 and 8)."""

    def __init__(self, store: Store, email: str = "therapist@alliance.test") -> None:
        super().__init__(store, email)
        self.c7 = self.world.session("c7", self.now + timedelta(weeks=2), self.code, status=Status.CANCELLED)
        self.c8 = self.world.session("c8", self.now + timedelta(weeks=3), self.code, status=Status.CANCELLED)


def _attendance(course: Course) -> dict[int, Attendance]:
    trend = client_trend(course.store, course.therapist, course.code, now=course.now)
    return {r.record.session_id: r.record.attendance for r in trend.rows}


def _r8(course: Course) -> list[tuple[int, ...]]:
    trend = client_trend(course.store, course.therapist, course.code, now=course.now)
    return [tuple(r.session_id for r in f.rows) for f in trend.flags if f.rule == "R8"]


def test_client_cancellations_recorded_by_the_therapist_fire_r8(store: Store) -> None:
    course = Cancelled(store)
    # A calendar does not say who cancelled: the therapist's, and R8 stays silent.
    assert _attendance(course)[course.c7] is Attendance.THERAPIST_CANCELLED and _r8(course) == []
    record_cancellation(store, course.therapist, course.c7, "client", late=True)
    assert _attendance(course)[course.c7] is Attendance.CLIENT_CANCELLED_LATE and _r8(course) == []
    record_cancellation(store, course.therapist, course.c8, "client")
    assert _attendance(course)[course.c8] is Attendance.CLIENT_CANCELLED
    assert _r8(course) == [(course.c7, course.c8)]
    # A later record replaces the first: the therapist cancelled after all.
    record_cancellation(store, course.therapist, course.c8, "therapist", late=True)
    assert _attendance(course)[course.c8] is Attendance.THERAPIST_CANCELLED and _r8(course) == []


def test_only_a_cancelled_session_of_ones_own_takes_a_cancellation(store: Store) -> None:
    course = Cancelled(store)
    with pytest.raises(NotCancelled, match="not cancelled"):
        record_cancellation(store, course.therapist, course.s6, "client")
    with pytest.raises(ValueError, match="'client' or 'therapist'"):
        record_cancellation(store, course.therapist, course.c7, "the dog")
    other = Course(store, "someone.else@alliance.test")
    with pytest.raises(UnknownSession):
        record_cancellation(store, other.therapist, course.c7, "client")
    assert _attendance(course)[course.c7] is Attendance.THERAPIST_CANCELLED


async def test_the_cancellation_api_records_and_scopes(client: httpx.AsyncClient, store: Store) -> None:
    course = Cancelled(store)
    other = Course(store, "someone.else@alliance.test")
    auth = {"Authorization": f"Bearer {create_api_token(store, course.therapist, 'tests').token}"}
    url = f"/api/v1/sessions/{course.c7}/cancellation"
    done = await client.put(url, json={"cancelled_by": "client", "late": True}, headers=auth)
    assert done.status_code == 200, done.text
    assert done.json()["cancelled_by"] == "client" and done.json()["late"] is True
    assert _attendance(course)[course.c7] is Attendance.CLIENT_CANCELLED_LATE
    not_cancelled = await client.put(
        f"/api/v1/sessions/{course.s6}/cancellation", json={"cancelled_by": "client"}, headers=auth
    )
    assert not_cancelled.status_code == 409
    theirs = await client.put(
        f"/api/v1/sessions/{other.s1}/cancellation", json={"cancelled_by": "client"}, headers=auth
    )
    assert theirs.status_code == 404
    bad = await client.put(url, json={"cancelled_by": "nobody"}, headers=auth)
    assert bad.status_code == 422 and [e["name"] for e in bad.json()["errors"]] == ["cancelled_by"]


async def test_the_session_listing_shows_who_cancelled(client: httpx.AsyncClient, store: Store) -> None:
    course = Cancelled(store)
    record_cancellation(store, course.therapist, course.c7, "client", late=True)
    auth = {"Authorization": f"Bearer {create_api_token(store, course.therapist, 'tests').token}"}
    listed = await client.get("/api/v1/sessions", headers=auth)
    assert listed.status_code == 200, listed.text
    shown = {s["id"]: (s["status"], s["cancelled_by"], s["cancelled_late"]) for s in listed.json()}
    assert shown[course.c7] == ("cancelled", "client", True)
    assert shown[course.c8] == ("cancelled", None, None), "cancelled, but nobody said by whom yet"
    assert shown[course.s6] == ("confirmed", None, None)
    record_cancellation(store, course.therapist, course.c8, "therapist")
    one = await client.get(f"/api/v1/sessions/{course.c8}", headers=auth)
    assert (one.json()["cancelled_by"], one.json()["cancelled_late"]) == ("therapist", False)


async def test_the_client_list_shows_codes_next_sessions_ratings_and_flags_of_ones_own_clients(
    client: httpx.AsyncClient, store: Store
) -> None:
    therapist = create_therapist(store, "ana@example.org", display_name="Ana")
    set_password(store, therapist, PASSWORD)
    course = Course(store, "ana@example.org")
    quiet = course.world.client(name="Quiet Person")  # no sessions yet
    other = Course(store, "someone.else@alliance.test")
    assert (await client.get("/clients")).status_code in (303, 307)  # signed out: to the login page
    await sign_in(client)
    page = await client.get("/clients")
    assert page.status_code == 200
    text = page.text
    assert f'id="client-{course.code}"' in text and f'id="client-{quiet}"' in text
    assert other.code not in text  # another therapist's client
    assert "Zelda" not in text and "Quiet Person" not in text  # codes only, never names
    assert f'href="/clients/{course.code}/ratings"' in text
    assert f'href="/sessions/{course.s6}/checklists"' in text  # the next session
    row = text[text.index(f'id="client-{course.code}"') :].split("</tr>")[0]
    # Latest rating 35.5 (session 2), 3.0 below the one before; sessions 3-5 had no rating.
    assert "35.5" in row and "down 3.0" in row
    # Recent flags: those fired at the last three past sessions (3: no-show R7, 4: missing R6).
    assert "R7" in row and "R1" not in row
    quiet_row = text[text.index(f'id="client-{quiet}"') :].split("</tr>")[0]
    assert "none booked" in quiet_row
