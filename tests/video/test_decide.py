"""Properties of the video decision and of the Zoom webhook parser."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.video.decide import Action, Have, Status, Want, decide
from integrations.zoom.webhook import InvalidDelivery, MalformedEvent, parse_call_event, verify_signature
from sandbox.zoom import sign

NOW = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=14)

wants = st.builds(
    lambda online, cancelled, offset_h, minutes, external: Want(
        online, cancelled, NOW + timedelta(hours=offset_h), NOW + timedelta(hours=offset_h, minutes=minutes), external
    ),
    st.booleans(),
    st.booleans(),
    st.integers(-48, 24 * 40),
    st.integers(1, 180),
    st.sampled_from([None, "https://meet.google.com/abc-defg-hij"]),
)
haves = st.builds(
    lambda status, provider, meeting, moved, create_sent, held, conn: Have(
        status=status,
        provider=provider,
        meeting_id=meeting if provider == "zoom" else None,
        meeting_start=NOW + timedelta(hours=moved) if meeting else None,
        meeting_minutes=50 if meeting else None,
        create_sent=create_sent and provider == "zoom",
        held=held and status is Status.MISSING,
        has_connection=conn,
    ),
    st.sampled_from(list(Status)),
    st.sampled_from([None, "zoom", "external"]),
    st.sampled_from([None, "81234567890"]),
    st.integers(-2, 2),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


@given(wants, haves)
def test_the_decision_never_makes_a_meeting_it_must_not(want: Want, have: Have) -> None:
    action = decide(want, have, NOW, WINDOW)
    ours = have.provider == "zoom" and (have.meeting_id is not None or have.create_sent)
    if want.end <= NOW:
        assert action is Action.NOTHING  # the past is left alone
    if action is Action.CREATE:
        # Never a second meeting, never one for a cancelled/in-person/external/far-away session.
        assert not ours and not have.create_sent and want.online and not want.cancelled
        assert want.external_url is None and want.start <= NOW + WINDOW and have.has_connection and not have.held
    if action is Action.DELETE:
        assert ours
    if action in (Action.MOVE, Action.RECOVER):
        assert have.provider == "zoom" and want.online and not want.cancelled and want.external_url is None
    if have.create_sent and have.meeting_id is None and want.end > NOW:
        assert action in (Action.RECOVER, Action.DELETE, Action.NOTHING)
        if action is Action.NOTHING:
            assert have.held


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@given(
    st.sampled_from(["meeting.started", "meeting.ended", "meeting.participant_joined", "meeting.deleted", "x"]),
    st.dictionaries(st.sampled_from(["event_ts", "payload", "object", "id", "uuid"]), json_values, max_size=4),
)
def test_the_parser_takes_anything_and_only_raises_malformed(event: str, extra: dict[str, Any]) -> None:
    body = {"event": event, **extra}
    try:
        parsed = parse_call_event(body)
    except MalformedEvent:
        return
    assert parsed is None or (parsed.provider == "zoom" and parsed.meeting_id and parsed.at is not None)


@given(st.binary(max_size=200), st.text(min_size=1, max_size=20), st.integers(0, 2**31))
def test_only_bodies_signed_with_our_secret_verify(body: bytes, secret: str, ts: int) -> None:
    signature = sign(secret, str(ts), body)
    verify_signature(secret, str(ts), signature, body, now=float(ts))
    with pytest.raises(InvalidDelivery):
        verify_signature(secret + "x", str(ts), signature, body, now=float(ts))
    with pytest.raises(InvalidDelivery):
        verify_signature(secret, str(ts), signature, body + b" ", now=float(ts))
    with pytest.raises(InvalidDelivery):
        verify_signature(secret, str(ts), signature, body, now=float(ts + 301))


def test_participant_roles_come_from_the_host_id_and_names_are_dropped() -> None:
    obj = {
        "id": "1",
        "uuid": "u",
        "host_id": "H",
        "participant": {"id": "H", "user_name": "Dr X", "email": "x@y", "join_time": "2030-03-01T12:00:00Z"},
    }
    parsed = parse_call_event({"event": "meeting.participant_joined", "event_ts": 1, "payload": {"object": obj}})
    assert parsed is not None and parsed.role == "host" and "Dr X" not in json.dumps(parsed.__repr__())
    obj["participant"] = {"id": "", "user_name": "Client", "join_time": "2030-03-01T12:01:00Z"}
    parsed = parse_call_event({"event": "meeting.participant_joined", "event_ts": 2, "payload": {"object": obj}})
    assert parsed is not None and parsed.role == "client" and parsed.at == datetime(2030, 3, 1, 12, 1, tzinfo=UTC)
