"""Spreading reconciliation runs over their interval (core.jobs.spread)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from core.jobs.spread import next_slot, phase, reconcile_at

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)

_moments = st.datetimes(min_value=datetime(2026, 1, 2), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))
_intervals = st.integers(1, 24 * 60).map(lambda m: timedelta(minutes=m))


@given(key=st.text(min_size=1, max_size=20), after=_moments, interval=_intervals)
def test_the_next_slot_is_within_one_interval_and_on_the_keys_grid(
    key: str, after: datetime, interval: timedelta
) -> None:
    slot = next_slot(key, after, interval)
    assert after < slot <= after + interval
    # The same grid from any starting point: the slot after a slot is one interval later.
    assert next_slot(key, slot, interval) == slot + interval
    assert next_slot(key, slot - timedelta(microseconds=1), interval) == slot


@given(key=st.text(min_size=1, max_size=20), last=_moments, gap=st.integers(0, 10_000), interval=_intervals)
def test_reconcile_at_is_now_or_later_and_within_the_horizon(
    key: str, last: datetime, gap: int, interval: timedelta
) -> None:
    now = last + timedelta(seconds=gap)
    at = reconcile_at(key, last, now, interval, MINUTE)
    if at is not None:
        assert now <= at < now + MINUTE
        assert at - last > timedelta(0)


def test_a_new_connection_is_due_at_once() -> None:
    assert reconcile_at("sync:1", None, T0, timedelta(minutes=10), MINUTE) == T0


def test_a_fleet_synced_together_reconciles_spread_over_the_interval() -> None:
    """10,000 connections all synced at the same moment (a restart) never start together again."""
    interval = timedelta(minutes=60)
    keys = [f"sync:{n}" for n in range(10_000)]
    per_minute = Counter((next_slot(k, T0, interval) - T0) // MINUTE for k in keys)
    assert len(per_minute) == 60  # every minute of the hour gets some
    assert max(per_minute.values()) < 10_000 / 60 * 1.5  # ~167 expected per minute, none near 10,000
    assert min(phase(k) for k in keys) >= 0 and max(phase(k) for k in keys) < 1


def test_a_missed_slot_after_an_outage_takes_the_next_slot_not_a_burst() -> None:
    interval = timedelta(minutes=60)
    keys = [f"sync:{n}" for n in range(2_000)]
    back = T0 + timedelta(hours=5)  # the workers were down for five hours
    due_now = [k for k in keys if reconcile_at(k, T0, back, interval, MINUTE) is not None]
    assert 0 < len(due_now) < len(keys) / 60 * 2
