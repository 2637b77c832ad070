"""Building blocks of the notes tests: a therapist with a synced calendar, clients and sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.audit import Actor
from core.clients import ClientView, assign_occurrence, create_client, find_occurrence
from core.store import Store
from tests.core.test_clients import World

MONDAY = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)


class NotesWorld(World):
    """A :class:`World` that also hands out clients, sessions and an actor."""

    def __init__(self, store: Store, email: str = "therapist@alliance.test", name: str = "work") -> None:
        super().__init__(store, email, name)
        self.actor = Actor(self.therapist, "test")
        self._slot = 0

    def client(self, **details: str) -> ClientView:
        return create_client(self.store, self.therapist, **details)  # type: ignore[arg-type]

    def session(self, client: ClientView, uid: str | None = None, start: datetime | None = None) -> int:
        """Mirror one event, sync it and make it a session of ``client``; returns the session id."""
        self._slot += 1
        uid = uid or f"event-{self._slot}@{self.connection}"
        start = start or MONDAY + timedelta(days=self._slot)
        self.put(uid, start, provider_id=f"p-{uid}")
        self.sync()
        occurrence = find_occurrence(self.store, self.therapist, uid, start)
        return assign_occurrence(self.store, self.therapist, occurrence, client.code).id
