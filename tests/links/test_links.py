"""Client links in core: issue, hashing, scope, expiry, revocation, moves, cancellations, reassignment."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from core.clients import assign_occurrence, find_occurrence
from core.links import (
    LinkPolicy,
    UnknownSessionForLink,
    get_checkin,
    issue_link,
    link_url,
    live_tokens,
    open_link,
    revoke_link,
    save_checkin,
    set_contact_line,
)
from core.links.models import ClientLink
from core.store import Store
from core.sync import Status
from tests.core.test_privacy_at_rest import _raw_dump
from tests.links.world import ZOOM, LinkWorld, make_settings

START = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)  # far from any wall clock the tests run at
POLICY = LinkPolicy()


def _world_with_session(store: Store) -> tuple[LinkWorld, str, int]:
    world = LinkWorld(store)
    code = world.client(timezone="America/Mexico_City")
    return world, code, world.session("evt-1", START, code)


def test_a_link_is_random_hashed_at_rest_and_shows_nothing_but_the_token(store: Store) -> None:
    world, _code, session_id = _world_with_session(store)
    token = issue_link(store, world.therapist, session_id)
    assert len(token) >= 22  # >= 128 bits in URL-safe base64 (we draw 192)
    url = link_url("https://alliance.example/", token)
    assert url == f"https://alliance.example/c/{token}"
    # Issuing again is idempotent, and the therapist can see the same URL again.
    assert issue_link(store, world.therapist, session_id) == token
    assert live_tokens(store, world.therapist, [session_id]) == {session_id: token}
    with store.session() as session:
        row = session.scalar(select(ClientLink).where(ClientLink.session_id == session_id))
        assert row is not None and row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    dump = _raw_dump(store)
    assert token.encode() not in dump  # only its hash and its ciphertext are stored
    other = issue_link(store, world.therapist, world.session("evt-2", START + timedelta(days=7), _code))
    assert other != token


def test_the_page_data_of_a_token_and_the_same_none_for_every_bad_token(store: Store) -> None:
    world, _code, session_id = _world_with_session(store)
    token = issue_link(store, world.therapist, session_id)
    page = open_link(store, token, policy=POLICY, now=START - timedelta(days=1))
    assert page is not None
    assert (page.session_id, page.start, page.video_url) == (session_id, START, ZOOM)
    assert page.client_timezone == "America/Mexico_City" and page.event_timezone == "Europe/Madrid"
    assert not page.cancelled and not page.rated
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (tampered, "", "x" * 500, "../../etc/passwd", token.upper() if token.upper() != token else token + "x"):
        assert open_link(store, bad, policy=POLICY, now=START) is None


def test_a_link_expires_days_after_the_session_as_configured(store: Store) -> None:
    world, _code, session_id = _world_with_session(store)
    token = issue_link(store, world.therapist, session_id)
    end = START + timedelta(minutes=50)
    assert open_link(store, token, policy=POLICY, now=end + timedelta(days=7) - timedelta(seconds=1)) is not None
    assert open_link(store, token, policy=POLICY, now=end + timedelta(days=7)) is None
    short = LinkPolicy(valid_days=1)
    assert open_link(store, token, policy=short, now=end + timedelta(days=1)) is None


def test_revoking_kills_the_link_and_issuing_again_gives_a_new_one(store: Store) -> None:
    world, _code, session_id = _world_with_session(store)
    token = issue_link(store, world.therapist, session_id)
    assert revoke_link(store, world.therapist, session_id) is True
    assert revoke_link(store, world.therapist, session_id) is False
    assert open_link(store, token, policy=POLICY, now=START) is None
    assert live_tokens(store, world.therapist, [session_id]) == {}
    fresh = issue_link(store, world.therapist, session_id)
    assert fresh != token
    assert open_link(store, fresh, policy=POLICY, now=START) is not None
    assert open_link(store, token, policy=POLICY, now=START) is None


def test_a_moved_session_keeps_its_link_and_a_cancelled_one_says_so(store: Store) -> None:
    world, _code, session_id = _world_with_session(store)
    token = issue_link(store, world.therapist, session_id)
    moved = START + timedelta(days=2, hours=1)
    world.put("evt-1", moved)
    world.sync()
    page = open_link(store, token, policy=POLICY, now=START)
    assert page is not None and page.session_id == session_id and page.start == moved
    set_contact_line(store, world.therapist, "Questions? Call 030 1234 567")
    world.put("evt-1", moved, status=Status.CANCELLED)
    world.sync()
    page = open_link(store, token, policy=POLICY, now=START)
    assert page is not None and page.cancelled and page.contact_line == "Questions? Call 030 1234 567"


def test_links_are_scoped_to_the_therapist(store: Store) -> None:
    _world, _code, session_id = _world_with_session(store)
    other = LinkWorld(store, "other@alliance.test", "home")
    with pytest.raises(UnknownSessionForLink):
        issue_link(store, other.therapist, session_id)
    with pytest.raises(UnknownSessionForLink):
        revoke_link(store, other.therapist, session_id)
    with pytest.raises(UnknownSessionForLink):
        get_checkin(store, other.therapist, session_id)
    assert live_tokens(store, other.therapist, [session_id]) == {}


def test_an_assigned_session_gets_its_link_from_the_outbox_and_a_reassigned_one_a_new_link(
    store: Store, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path / "home")
    world, _code, session_id = _world_with_session(store)
    world.run_jobs(settings)
    token = live_tokens(store, world.therapist, [session_id])[session_id]
    # Handing the session to another client: the first client's link stops working at once.
    second = world.client(name="Bea Example")
    occurrence_id = find_occurrence(store, world.therapist, "evt-1", START)
    assign_occurrence(store, world.therapist, occurrence_id, second)
    assert open_link(store, token, policy=POLICY, now=START) is None
    world.run_jobs(settings)
    new = live_tokens(store, world.therapist, [session_id])[session_id]
    assert new != token
    page = open_link(store, new, policy=POLICY, now=START)
    assert page is not None and page.client_timezone is None  # the second client has no zone stored


def test_the_check_in_is_encrypted_and_shown_to_the_therapist_only(store: Store) -> None:
    world, _code, session_id = _world_with_session(store)
    token = issue_link(store, world.therapist, session_id)
    page = open_link(store, token, policy=POLICY, now=START)
    assert page is not None
    save_checkin(store, page, checked=["C1", "C6"], location="Calle Mayor 12, Zaragoza", callback="+34 600 111 222")
    view = get_checkin(store, world.therapist, session_id)
    assert view is not None
    assert (view.checked, view.location, view.callback) == (("C1", "C6"), "Calle Mayor 12, Zaragoza", "+34 600 111 222")
    dump = _raw_dump(store)
    assert b"Calle Mayor" not in dump and b"600 111 222" not in dump
