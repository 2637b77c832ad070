"""Persistence: tables, engine, migrations."""

from core.store.db import Store, make_engine, pending_migrations, upgrade
from core.store.models import (
    Base,
    Connection,
    Occurrence,
    OccurrenceHistory,
    OutboxEvent,
    Therapist,
)

__all__ = [
    "Base",
    "Connection",
    "Occurrence",
    "OccurrenceHistory",
    "OutboxEvent",
    "Store",
    "Therapist",
    "make_engine",
    "pending_migrations",
    "upgrade",
]
