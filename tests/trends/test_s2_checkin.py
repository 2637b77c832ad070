"""S2 (today's place and callback number) counts as answered when the client confirmed both on their own link."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.checklists import LOCATION_KEY, AnswerInput, Phase, open_flags, record_answers, session_checklists
from core.links import LinkPolicy, issue_link, open_link, save_checkin
from core.store import Store
from tests.links.world import LinkWorld


class Sessions:
    """Two online sessions of one client, tomorrow and next week, each with a client link."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.world = LinkWorld(store)
        self.therapist = self.world.therapist
        code = self.world.client()
        soon = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
        self.first = self.world.session("s2-a", soon, code)
        self.second = self.world.session("s2-b", soon + timedelta(weeks=1), code)

    def checkin(
        self, session_id: int, *, location: str | None, callback: str | None, checked: tuple[str, ...] = ()
    ) -> None:
        token = issue_link(self.store, self.therapist, session_id)
        page = open_link(self.store, token, policy=LinkPolicy())
        assert page is not None
        save_checkin(self.store, page, checked=list(checked), location=location, callback=callback)

    def s2_flagged(self, session_id: int) -> tuple[bool, bool]:
        """(flagged on the session's own view, flagged in the bulk listing)."""
        one = any(f.key == LOCATION_KEY for f in session_checklists(self.store, self.therapist, session_id).flags)
        bulk = any(f.key == LOCATION_KEY for f in open_flags(self.store, self.therapist).get(session_id, []))
        return one, bulk


@pytest.fixture
def sessions(store: Store) -> Sessions:
    return Sessions(store)


def test_the_clients_confirmation_of_place_and_number_answers_s2_for_that_session(sessions: Sessions) -> None:
    assert sessions.s2_flagged(sessions.first) == (True, True)
    sessions.checkin(sessions.first, location="At my sister's, Calle Mayor 3, Madrid", callback="+34 600 123 456")
    assert sessions.s2_flagged(sessions.first) == (False, False)
    assert session_checklists(sessions.store, sessions.therapist, sessions.first).client_confirmed_location
    # Only that session: the next one still needs its own confirmation.
    assert sessions.s2_flagged(sessions.second) == (True, True)
    assert not session_checklists(sessions.store, sessions.therapist, sessions.second).client_confirmed_location


@pytest.mark.parametrize(
    ("location", "callback", "checked"),
    [("Home", None, ()), (None, "+34 600 123 456", ()), (None, None, ("C1", "C6"))],
)
def test_a_partial_check_in_leaves_s2_flagged(
    sessions: Sessions, location: str | None, callback: str | None, checked: tuple[str, ...]
) -> None:
    sessions.checkin(sessions.first, location=location, callback=callback, checked=checked)
    assert sessions.s2_flagged(sessions.first) == (True, True)


def test_the_bulk_listing_and_the_therapists_own_answer_agree(sessions: Sessions) -> None:
    sessions.checkin(sessions.first, location="Home", callback="030 1234 567")
    flags = open_flags(sessions.store, sessions.therapist)
    assert sessions.first not in flags and sessions.second in flags
    # The therapist answering S2 on the second session clears it as before.
    record_answers(
        sessions.store, sessions.therapist, sessions.second, Phase.START, [AnswerInput(LOCATION_KEY, "done", "Home")]
    )
    assert sessions.second not in open_flags(sessions.store, sessions.therapist)


def test_another_therapist_sees_none_of_it(store: Store, sessions: Sessions) -> None:
    sessions.checkin(sessions.first, location="Home", callback="030 1234 567")
    other = LinkWorld(store, "other@alliance.test")
    assert open_flags(store, other.therapist) == {}
