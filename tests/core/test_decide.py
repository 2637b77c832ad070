"""The pure sync decision: every branch of ``decide()`` spelled out, plus its fixed-point properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.sync.decide import Action, LocalState, RemoteState, decide
from core.sync.types import Status

T0 = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=50)
LATER = timedelta(days=1)
ZERO = timedelta(0)

CONFIRMED, TENTATIVE, CANCELLED = Status.CONFIRMED, Status.TENTATIVE, Status.CANCELLED


def _slot(shift: timedelta, end_shift: timedelta) -> tuple[datetime, datetime]:
    return T0 + shift, T1 + shift + end_shift


def local(
    status: Status = CONFIRMED, *, shift: timedelta = ZERO, end_shift: timedelta = ZERO, h: str = "h1"
) -> LocalState:
    return LocalState(status, *_slot(shift, end_shift), h)


def remote(
    status: Status = CONFIRMED, *, shift: timedelta = ZERO, end_shift: timedelta = ZERO, h: str = "h1"
) -> RemoteState:
    return RemoteState(status, *_slot(shift, end_shift), h)


# (case, local, remote, expected): one row per branch of decide(), ambiguous cases named.
CASES = [
    # Never mirrored.
    ("unknown removal (replayed tombstone / outside the window)", None, None, Action.NOTHING),
    ("first sighting, confirmed", None, remote(), Action.CREATE),
    ("first sighting, tentative", None, remote(TENTATIVE), Action.CREATE),
    (
        "first sighting already cancelled (cancelled exception of a series)",
        None,
        remote(CANCELLED),
        Action.CREATE_CANCELLED,
    ),
    # Live here, gone or cancelled at the source.
    ("live, removed at the source", local(), None, Action.CANCEL),
    ("tentative, removed at the source", local(TENTATIVE), None, Action.CANCEL),
    ("live, cancelled at the source", local(), remote(CANCELLED), Action.CANCEL),
    ("live, cancelled at the source with new times", local(), remote(CANCELLED, shift=LATER), Action.CANCEL),
    # Cancelled here: replays of a cancellation are no-ops.
    ("cancelled, removal replayed", local(CANCELLED), None, Action.NOTHING),
    ("cancelled, cancellation replayed", local(CANCELLED), remote(CANCELLED), Action.NOTHING),
    ("cancelled, cancelled again with other content", local(CANCELLED), remote(CANCELLED, h="h2"), Action.NOTHING),
    # Cancelled here, live at the source: restore (whatever else changed meanwhile).
    ("cancelled, live again unchanged (undo)", local(CANCELLED), remote(), Action.RESTORE),
    ("cancelled, live again tentative", local(CANCELLED), remote(TENTATIVE), Action.RESTORE),
    ("cancelled, live again at new times", local(CANCELLED), remote(shift=LATER), Action.RESTORE),
    ("cancelled, live again with new content", local(CANCELLED), remote(h="h2"), Action.RESTORE),
    # Both live: times win over content.
    ("moved", local(), remote(shift=LATER), Action.RESCHEDULE),
    ("only the start moved (longer session)", local(), remote(shift=-LATER, end_shift=LATER), Action.RESCHEDULE),
    ("only the end moved", local(), remote(end_shift=timedelta(minutes=10)), Action.RESCHEDULE),
    ("moved and retitled", local(), remote(shift=LATER, h="h2"), Action.RESCHEDULE),
    ("moved and tentative", local(), remote(TENTATIVE, shift=LATER), Action.RESCHEDULE),
    ("same slot, new content", local(), remote(h="h2"), Action.UPDATE),
    ("same slot, confirmed -> tentative, same hash", local(), remote(TENTATIVE), Action.UPDATE),
    ("same slot, tentative -> confirmed, same hash", local(TENTATIVE), remote(), Action.UPDATE),
    ("identical (spurious etag bump, replayed page)", local(), remote(), Action.NOTHING),
    ("identical tentative", local(TENTATIVE), remote(TENTATIVE), Action.NOTHING),
]


@pytest.mark.parametrize(("local_state", "remote_state", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide_table(local_state: LocalState | None, remote_state: RemoteState | None, expected: Action) -> None:
    assert decide(local_state, remote_state) is expected


def test_same_instant_in_another_zone_is_not_a_reschedule() -> None:
    vienna = T0.astimezone(ZoneInfo("Europe/Vienna"))
    moved = RemoteState(CONFIRMED, vienna, T1, "h1")
    assert decide(local(), moved) is Action.NOTHING


def test_every_action_is_reachable() -> None:
    assert {c[3] for c in CASES} == set(Action)


# --- properties --------------------------------------------------------------------------------

# Few distinct instants and hashes, so that independent draws often agree on the slot or content.
instants = st.sampled_from([T0, T0 + timedelta(hours=1), T0 + LATER])
durations = st.sampled_from([ZERO, timedelta(minutes=50), timedelta(hours=1)])
hashes = st.sampled_from(["h1", "h2", "h3"])


@st.composite
def remote_states(draw: st.DrawFn) -> RemoteState | None:
    if draw(st.integers(0, 4)) == 0:
        return None
    start = draw(instants)
    return RemoteState(draw(st.sampled_from(Status)), start, start + draw(durations), draw(hashes))


def local_from(remote_state: RemoteState | None) -> LocalState | None:
    """What the mirror holds after faithfully storing ``remote_state``."""
    if remote_state is None:
        return None
    return LocalState(remote_state.status, remote_state.start, remote_state.end, remote_state.content_hash)


local_states = remote_states().map(local_from)


def applied(local_state: LocalState | None, remote_state: RemoteState | None, action: Action) -> LocalState | None:
    """A model of what the engine does with ``action`` (the mirror's side only)."""
    if action is Action.NOTHING:
        return local_state
    if action is Action.CANCEL:
        assert local_state is not None
        # The engine keeps the last known times and content of a cancelled occurrence.
        return replace(local_state, status=CANCELLED)
    return local_from(remote_state)


@st.composite
def any_remote_states(draw: st.DrawFn) -> RemoteState | None:
    """Any remote state at all: any instants in any zone, any hash."""
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    start = draw(st.datetimes(timezones=st.timezones()))
    end = draw(st.datetimes(min_value=start.replace(tzinfo=None), timezones=st.just(start.tzinfo)))
    return RemoteState(draw(st.sampled_from(Status)), start, end, draw(st.text()))


@given(st.one_of(remote_states(), any_remote_states()))
def test_resync_of_a_mirrored_state_is_a_no_op(remote_state: RemoteState | None) -> None:
    assert decide(local_from(remote_state), remote_state) is Action.NOTHING


@given(local_states, remote_states())
def test_one_decision_reaches_a_fixed_point(local_state: LocalState | None, remote_state: RemoteState | None) -> None:
    action = decide(local_state, remote_state)
    assert decide(applied(local_state, remote_state, action), remote_state) is Action.NOTHING


@given(local_states, remote_states())
def test_actions_fit_the_states(local_state: LocalState | None, remote_state: RemoteState | None) -> None:
    action = decide(local_state, remote_state)
    if action in (Action.CREATE, Action.CREATE_CANCELLED):
        assert local_state is None and remote_state is not None
    if action in (Action.UPDATE, Action.RESCHEDULE, Action.CANCEL, Action.RESTORE):
        assert local_state is not None
    if action is Action.CANCEL:
        assert local_state.status is not CANCELLED
        assert remote_state is None or remote_state.status is CANCELLED
    if action is Action.RESTORE:
        assert local_state.status is CANCELLED
        assert remote_state is not None and remote_state.status is not CANCELLED
