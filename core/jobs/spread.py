"""Spreading periodic per-item work (reconciliation syncs) evenly over its interval.

Every item (a connection) gets a fixed *phase*: a fraction of the interval derived from a hash of
its key. Its runs fall on a grid ``epoch + phase * interval + k * interval``, so N items with an
interval of I minutes start about N / I runs per minute, at stable moments, instead of N runs on
the same tick ("randomize traffic", Google's quota guide; reference/scale.md section 8: aligned
polling of many connections hits 429s long before the averages say). Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

__all__ = ["EPOCH", "next_slot", "phase", "reconcile_at"]

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def phase(key: str) -> float:
    """A stable fraction in [0, 1) for ``key`` (uniform over keys)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def next_slot(key: str, after: datetime, interval: timedelta) -> datetime:
    """The first moment of ``key``'s grid strictly after ``after``."""
    offset = interval * phase(key)
    periods = (after - EPOCH - offset) // interval  # floor division of timedeltas: an int
    slot: datetime = EPOCH + offset + interval * (periods + 1)
    return slot


def reconcile_at(
    key: str, last_run: datetime | None, now: datetime, interval: timedelta, horizon: timedelta
) -> datetime | None:
    """When the next spread run of ``key`` should start, if that is before ``now + horizon``; else None.

    - Never run: now (a new connection is synced at once; people add them one at a time).
    - Otherwise the first grid slot after the last run. Runs in between (a push-triggered sync)
      do not move the grid, so the spread survives any pattern of pushes.
    - A slot missed by more than ``horizon`` (the workers were down) is not caught up at once,
      which would make a whole fleet run together when they come back; the next slot is taken.
    """
    if last_run is None:
        return now
    slot = next_slot(key, last_run, interval)
    if slot < now - horizon:
        slot = next_slot(key, now - timedelta(microseconds=1), interval)
    if slot >= now + horizon:
        return None
    return max(slot, now)
