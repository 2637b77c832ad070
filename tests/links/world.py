"""A therapist, a memory calendar, a client and sessions: what the client-link tests build on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from alliance.jobs import build_registry
from alliance.settings import Settings
from core.clients import assign_occurrence, create_client, find_occurrence
from core.jobs import InProcessRunner, RetryPolicy
from core.mirror import add_connection, ensure_therapist
from core.store import Store
from core.sync import OccurrenceKey, RemoteOccurrence, Status, sync_connection
from integrations.base import MemoryCalendar, MemoryProvider
from tests.conftest import TEST_MASTER_KEY

ZOOM = "https://us02web.zoom.us/j/123456789?pwd=abc"


def make_settings(home: Path, **extra: object) -> Settings:
    return Settings(home=home, master_key=TEST_MASTER_KEY, timezone="UTC", **extra)  # type: ignore[arg-type]


class LinkWorld:
    """One therapist with one memory calendar; sessions made from events put on it."""

    def __init__(self, store: Store, email: str = "therapist@alliance.test", name: str = "work") -> None:
        self.store = store
        self.therapist = ensure_therapist(store, email)
        self.calendar = MemoryCalendar()
        self.connection = add_connection(store, self.therapist, "memory", name, {"calendar": name})

    def sync(self) -> None:
        sync_connection(self.store, self.connection, MemoryProvider(self.calendar))

    def client(self, *, timezone: str | None = None, name: str = "Anna Example") -> str:
        return create_client(self.store, self.therapist, name=name, timezone=timezone).code

    def put(
        self,
        uid: str,
        start: datetime,
        *,
        minutes: int = 50,
        status: Status = Status.CONFIRMED,
        video: str | None = ZOOM,
        timezone: str | None = "Europe/Madrid",
    ) -> None:
        self.calendar.put(
            RemoteOccurrence(
                key=OccurrenceKey(uid, ""),
                start=start,
                end=start + timedelta(minutes=minutes),
                status=status,
                timezone=timezone,
                title="Session K7Q2",
                conference_url=video or "",
            )
        )

    def session(self, uid: str, start: datetime, code: str, **fields: object) -> int:
        """Put a single event, sync it and assign it to the client; returns the session id."""
        self.put(uid, start, **fields)  # type: ignore[arg-type]
        self.sync()
        occurrence_id = find_occurrence(self.store, self.therapist, uid, start)
        return assign_occurrence(self.store, self.therapist, occurrence_id, code).id

    def run_jobs(self, settings: Settings, now: datetime | None = None) -> int:
        """Deliver the outbox through the real job registry (alliance.jobs), as the worker does."""
        runner = InProcessRunner(self.store, build_registry(settings), policy=RetryPolicy(random=lambda: 0.5))
        return runner.run_pending(now or datetime.now(UTC))
