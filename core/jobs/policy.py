"""Retry policy: how often, how far apart, how long a claim lasts."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

__all__ = ["DEFAULT_MAX_ATTEMPTS", "RetryPolicy"]

DEFAULT_MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter; after ``max_attempts`` failures an item is parked.

    With the defaults a failing handler is tried 8 times over roughly an hour
    (30 s, 1, 2, 4, 8, 16, 32 min, each jittered), then parked for an operator.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    # How long a claimed item stays reserved for its worker; a worker that died mid-run loses it
    # after this and another worker runs it again (which is why handlers are idempotent).
    claim_for: timedelta = timedelta(minutes=10)
    # Returns a float in [0, 1); injectable so tests see exact delays.
    random: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt.

        "Equal jitter": half the exponential delay is fixed and half is random, so delays grow
        from one attempt to the next (until the cap) while workers that failed together on the
        same outage do not all come back at the same instant.
        """
        exponent = min(max(attempts, 1) - 1, 32)  # 2**32 * base is far past any cap
        ceiling = min(self.cap, self.base * (2**exponent))
        half: timedelta = ceiling / 2
        jitter: timedelta = half * self.random()
        return half + jitter
