"""Property: whatever course a client's sessions take, the trend read back from the store is the series the
outcomes describe (ratings, no-shows, short calls, missing and pending ratings), and its flags are R1-R8's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.alerts import Attendance, RatingState, Scores, SessionRecord, evaluate
from core.client_trends import client_trend
from core.clients import get_client
from core.ratings import record_session_end, submit_rating
from core.store import Store
from tests.links.world import LinkWorld

tenths = st.integers(min_value=0, max_value=100).map(lambda n: Decimal(n) / 10)
scores = st.tuples(tenths, tenths, tenths, tenths)
outcome = st.one_of(
    scores,
    st.sampled_from(["no_show", "unrated", "short_call"]),
)
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def world(sqlite_store: Store) -> LinkWorld:
    return LinkWorld(sqlite_store)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outcomes=st.lists(outcome, min_size=0, max_size=6), recent=st.booleans())
def test_the_trend_is_the_series_the_outcomes_describe(world: LinkWorld, outcomes: list[object], recent: bool) -> None:
    store = world.store
    code = world.client()
    client_id = get_client(store, world.therapist, code).id
    uids = count()
    expected: list[SessionRecord] = []
    for i, what in enumerate(outcomes):
        # Weekly, the last one either 2 days ago (its rating still expected) or 9 days ago.
        start = NOW - timedelta(days=2 if recent else 9) - timedelta(weeks=len(outcomes) - 1 - i)
        sid = world.session(f"p-{client_id}-{next(uids)}", start, code)
        if isinstance(what, tuple):
            submit_rating(
                store, sid, client_id, dict(zip(("bond", "goals", "approach", "overall"), map(str, what), strict=True))
            )
            expected.append(SessionRecord(sid, start, scores=Scores(*what)))
        elif what == "no_show":
            record_session_end(store, sid, ended_at=None, no_show=True)
            expected.append(SessionRecord(sid, start, Attendance.NO_SHOW))
        elif what == "short_call":
            record_session_end(store, sid, started_at=start, ended_at=start + timedelta(minutes=3))
            expected.append(SessionRecord(sid, start, rating=RatingState.NOT_REQUESTED))
        else:
            waiting = start + timedelta(minutes=50) + timedelta(days=7) > NOW
            expected.append(SessionRecord(sid, start, rating=RatingState.PENDING if waiting else RatingState.MISSING))
    trend = client_trend(store, world.therapist, code, now=NOW)
    assert list(trend.records) == expected
    assert list(trend.flags) == evaluate(expected)
