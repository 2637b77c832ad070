"""Wiring of the per-connection sync backoff (core.sync.backoff) to settings, errors and mail.

Every failed sync, whoever ran it (a job, ``alliance sync``, the API's "sync now"), goes through
:func:`note_failure`: the failure is counted, a retryable one sets ``backoff_until``, and the K-th
failure in a row queues the therapist's "needs attention" e-mail in the same transaction.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from alliance.settings import Settings
from core.store import Store
from core.sync import SourceUnavailable
from core.sync.attention import queue_attention_mail
from core.sync.backoff import BackoffPolicy, FailureRecord, record_failure

__all__ = ["backoff_policy", "is_retryable", "note_failure"]


def backoff_policy(settings: Settings) -> BackoffPolicy:
    return BackoffPolicy(
        base=timedelta(seconds=settings.sync_backoff_base_seconds),
        cap=timedelta(seconds=settings.sync_backoff_cap_seconds),
        max_failures=settings.sync_max_failures,
    )


def is_retryable(exc: BaseException) -> bool:
    """Throttling, 5xx, timeouts, dropped connections, quota: waiting may fix it."""
    return isinstance(exc, SourceUnavailable)


def note_failure(
    store: Store,
    settings: Settings,
    connection_id: int,
    exc: BaseException,
    now: datetime,
    *,
    rand: Callable[[], float] = random.random,
) -> FailureRecord | None:
    """Record one failed sync of the connection; its new failure state (None when it is gone)."""
    policy = backoff_policy(settings)

    def tell_therapist(session: Session, record: FailureRecord) -> None:
        if record.consecutive_failures >= policy.max_failures:
            queue_attention_mail(store, session, connection_id, record, now=now, base_url=settings.base_url)

    return record_failure(
        store,
        connection_id,
        retryable=is_retryable(exc),
        retry_after=exc.retry_after if isinstance(exc, SourceUnavailable) else None,
        policy=policy,
        now=now,
        random=rand,
        then=tell_therapist,
    )
