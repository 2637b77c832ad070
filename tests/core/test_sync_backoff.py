"""The backoff calculation (properties) and the failure record on a connection (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.mirror import add_connection, ensure_therapist, get_connection
from core.store import Store
from core.sync import ReauthorizationRequired, SourceError, sync_connection
from core.sync.backoff import BackoffPolicy, backoff_ceiling, backoff_delay, record_failure
from integrations.base import MemoryCalendar, MemoryProvider

T0 = datetime(2030, 5, 6, 9, 0, tzinfo=UTC)

policies = st.builds(
    lambda base, extra, k: BackoffPolicy(timedelta(seconds=base), timedelta(seconds=base + extra), k),
    st.floats(min_value=0.5, max_value=600),
    st.floats(min_value=0, max_value=86_400),
    st.integers(min_value=1, max_value=50),
)
unit = st.floats(min_value=0, max_value=1)


@given(policies, st.integers(min_value=1, max_value=10_000), unit)
def test_a_backoff_is_within_zero_and_its_ceiling_and_never_above_the_cap(
    policy: BackoffPolicy, failures: int, r: float
) -> None:
    ceiling = backoff_ceiling(failures, policy)
    delay = backoff_delay(failures, policy, random=lambda: r)
    assert timedelta(0) <= delay <= ceiling <= policy.cap
    # Full jitter: the draw scales the ceiling (r = 0 -> no wait, r = 1 -> the whole ceiling).
    assert abs(delay - ceiling * r) <= timedelta(microseconds=1)


@given(policies, st.integers(min_value=1, max_value=200))
def test_the_expected_backoff_never_shrinks_and_doubles_until_the_cap(policy: BackoffPolicy, failures: int) -> None:
    # With full jitter the expectation is ceiling / 2: monotone in the number of failures.
    now, later = backoff_ceiling(failures, policy), backoff_ceiling(failures + 1, policy)
    assert later >= now
    assert later == min(policy.cap, now * 2) or later == policy.cap
    assert backoff_ceiling(1, policy) == policy.base


@given(policies, st.integers(min_value=1, max_value=100), st.floats(min_value=0, max_value=7 * 86_400), unit)
def test_retry_after_is_honoured_as_given(policy: BackoffPolicy, failures: int, seconds: float, r: float) -> None:
    assert backoff_delay(failures, policy, retry_after=seconds, random=lambda: r) == timedelta(seconds=seconds)


def test_a_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(base=timedelta(seconds=60), cap=timedelta(seconds=30))
    with pytest.raises(ValueError):
        BackoffPolicy(base=timedelta(0))
    with pytest.raises(ValueError):
        BackoffPolicy(max_failures=0)


def _connection(store: Store) -> tuple[int, int]:
    therapist = ensure_therapist(store, "ana@example.org")
    return therapist, add_connection(store, therapist, "memory", "Practice", {"calendar": "practice"})


def test_failures_count_up_back_off_and_reach_needs_attention_then_a_success_resets(store: Store) -> None:
    therapist, cid = _connection(store)
    policy = BackoffPolicy(base=timedelta(seconds=10), cap=timedelta(seconds=40), max_failures=3)
    calendar = MemoryCalendar()
    seen = []
    for n in range(4):
        calendar.fail_after_pages = 0  # the next listing fails (once)
        with pytest.raises(SourceError):
            sync_connection(store, cid, MemoryProvider(calendar))
        record = record_failure(
            store, cid, retryable=True, retry_after=None, policy=policy, now=T0 + timedelta(minutes=n), random=lambda: 1
        )
        assert record is not None
        seen.append((record.consecutive_failures, record.health, record.backoff_until))
    assert seen == [
        (1, "error", T0 + timedelta(seconds=10)),
        (2, "error", T0 + timedelta(minutes=1, seconds=20)),
        (3, "needs_attention", T0 + timedelta(minutes=2, seconds=40)),
        # The engine's next failure does not turn "needs attention" back into a plain error.
        (4, "needs_attention", T0 + timedelta(minutes=3, seconds=40)),
    ]
    view = get_connection(store, therapist, cid)
    assert view is not None and view.failing_since == T0 and view.health == "needs_attention"

    sync_connection(store, cid, MemoryProvider(calendar))
    view = get_connection(store, therapist, cid)
    assert view is not None
    assert (view.health, view.consecutive_failures, view.backoff_until, view.failing_since) == ("ok", 0, None, None)


def test_a_revoked_grant_stays_needs_reconnect_and_sets_no_backoff(store: Store) -> None:
    _, cid = _connection(store)
    policy = BackoffPolicy(max_failures=1)

    class Revoked:
        def list_changes(self, cursor: str | None) -> object:
            raise ReauthorizationRequired("connect again")

    with pytest.raises(ReauthorizationRequired):
        sync_connection(store, cid, Revoked())  # type: ignore[arg-type]
    record = record_failure(store, cid, retryable=False, retry_after=None, policy=policy, now=T0)
    assert record is not None
    assert (record.health, record.backoff_until, record.needs_attention) == ("needs_reconnect", None, True)


def test_a_removed_connection_row_is_reported_gone(store: Store) -> None:
    assert record_failure(store, 999_999, retryable=True, retry_after=None, policy=BackoffPolicy(), now=T0) is None
