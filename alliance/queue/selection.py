"""Which job queue runs: procrastinate on PostgreSQL (default there), the embedded worker on SQLite."""

from __future__ import annotations

from typing import Final, Literal

from alliance.settings import Settings

__all__ = ["EMBEDDED", "PROCRASTINATE", "QueueConfigError", "queue_kind"]

PROCRASTINATE: Final = "procrastinate"
EMBEDDED: Final = "embedded"


class QueueConfigError(ValueError):
    """ALLIANCE_QUEUE asks for something the database cannot do."""


def queue_kind(settings: Settings) -> Literal["procrastinate", "embedded"]:
    """``ALLIANCE_QUEUE`` when set, else procrastinate on PostgreSQL and embedded on SQLite."""
    on_postgres = settings.effective_database_url.startswith("postgresql")
    if settings.queue == PROCRASTINATE and not on_postgres:
        raise QueueConfigError(
            "ALLIANCE_QUEUE=procrastinate needs PostgreSQL (ALLIANCE_DATABASE_URL=postgresql+psycopg://...); "
            "on SQLite use ALLIANCE_QUEUE=embedded or leave it unset"
        )
    if settings.queue is not None:
        return settings.queue
    return PROCRASTINATE if on_postgres else EMBEDDED
