"""A therapist with a memory calendar, clients, a Zoom connection and the real Zoom stack.

Sessions are made the way Alliance makes them (sync -> outbox -> clients handler), and the video
lifecycle runs as the outbox handler runs it (``core.video.service.handle_event``), with zoomus
(wrapped) talking HTTP to the Zoom emulator.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from alliance.settings import Settings
from alliance.video import provider_factory, video_config
from core.clients import (
    assign_occurrence,
    create_client,
    find_occurrence,
    handle_outbox_event,
    list_sessions,
    set_session_modality,
)
from core.mirror import add_connection, ensure_therapist
from core.store import OutboxEvent, Store
from core.sync import OccurrenceKey, RemoteOccurrence, Status, sync_connection
from core.video.service import VideoConfig, connect_video, handle_event
from core.video.views import VideoLinkView, video_links
from integrations.base import MemoryCalendar, MemoryProvider
from sandbox.zoom import DEFAULT_ACCOUNT_ID, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, RunningZoom

CLIENT_NAME = "Annabel Quigley"


def soon(days: int = 2, hour: int = 17) -> datetime:
    base = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return base + timedelta(days=days)


class VideoWorld:
    def __init__(
        self,
        store: Store,
        zoom: RunningZoom,
        tmp_path: Path,
        *,
        email: str = "therapist@alliance.test",
        settings: Settings | None = None,
        **config: Any,
    ) -> None:
        self.store = store
        self.zoom = zoom
        self.therapist = ensure_therapist(store, email, timezone="Europe/Madrid")
        self.calendar = MemoryCalendar()
        self.connection = add_connection(store, self.therapist, "memory", "work", {"calendar": "work"})
        self.client = create_client(store, self.therapist, name=CLIENT_NAME, modality="online").code
        self.settings = settings or Settings(home=tmp_path, zoom_api_url=zoom.api_url, zoom_oauth_url=zoom.base_url)
        self.factory = provider_factory(self.settings)
        base = video_config(self.settings)
        self.config: VideoConfig = dataclasses.replace(base, **config)
        self.outbox_seen = 0
        self.outcomes: list[dict[int, str]] = []

    def connect(self) -> int:
        return connect_video(
            self.store,
            self.therapist,
            "zoom",
            "s2s",
            {
                "account_id": DEFAULT_ACCOUNT_ID,
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
                "user_id": self.zoom.state.default_user.id,
            },
        )

    def put(self, uid: str, start: datetime, minutes: int = 50, **fields: Any) -> OccurrenceKey:
        key = OccurrenceKey(uid, "")
        occ = RemoteOccurrence(
            key=key,
            start=start,
            end=start + timedelta(minutes=minutes),
            title=f"Session {CLIENT_NAME}",
            timezone="Europe/Madrid",
            **fields,
        )
        self.calendar.put(occ)
        return key

    def cancel(self, uid: str, start: datetime, minutes: int = 50) -> None:
        self.put(uid, start, minutes, status=Status.CANCELLED)

    def sync(self, now: datetime | None = None) -> None:
        sync_connection(self.store, self.connection, MemoryProvider(self.calendar))
        self.deliver(now)

    def deliver(self, now: datetime | None = None) -> None:
        """Hand new outbox events to the clients handler and the video handler, like the runner."""
        while True:
            with self.store.session() as session:
                events = session.execute(
                    select(OutboxEvent.id, OutboxEvent.kind, OutboxEvent.occurrence_id, OutboxEvent.payload)
                    .where(OutboxEvent.id > self.outbox_seen)
                    .order_by(OutboxEvent.id)
                ).all()
            if not events:
                return
            for event_id, kind, occurrence_id, payload in events:
                self.outbox_seen = event_id
                if kind.startswith("occurrence."):
                    handle_outbox_event(self.store, kind, occurrence_id)
                if kind.startswith(("occurrence.", "session.assigned", "session.modality")):
                    self.outcomes.append(
                        handle_event(self.store, occurrence_id, dict(payload or {}), self.factory, self.config, now)
                    )

    def assign(self, uid: str, start: datetime, now: datetime | None = None) -> int:
        occurrence_id = find_occurrence(self.store, self.therapist, uid, start)
        view = assign_occurrence(self.store, self.therapist, occurrence_id, self.client, modality="online")
        self.deliver(now)
        return view.id

    def set_modality(self, session_id: int, modality: str) -> None:
        set_session_modality(self.store, self.therapist, session_id, modality)
        self.deliver()

    def session_ids(self) -> list[int]:
        return [s.id for s in list_sessions(self.store, self.therapist)]

    def video(self, session_id: int) -> VideoLinkView | None:
        return video_links(self.store, self.therapist, [session_id]).get(session_id)

    def meetings(self) -> list[Any]:
        with self.zoom.state.lock:
            return list(self.zoom.state.meetings.values())

    def outbox_kinds(self) -> list[str]:
        with self.store.session() as session:
            return list(session.scalars(select(OutboxEvent.kind).order_by(OutboxEvent.id)))
