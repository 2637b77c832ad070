"""Zoom as the video lifecycle's meeting provider (``core.video.provider.MeetingProvider``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.video.provider import MeetingSpec, ProvidedMeeting
from integrations.zoom.client import ZoomApi, parse_zoom_time
from integrations.zoom.errors import ZoomRejected

__all__ = ["MARKER_PREFIX", "MEETING_SETTINGS", "ZoomMeetingProvider"]

# The marker travels in the agenda (visible to the host only in their meeting details; random,
# names nobody), so a create whose answer was lost can be found by listing the host's meetings.
MARKER_PREFIX = "alliance:"

# Private by default: waiting room, passcode, nobody in before the host, nothing recorded.
MEETING_SETTINGS: dict[str, Any] = {
    "waiting_room": True,
    "join_before_host": False,
    "auto_recording": "none",
    "approval_type": 2,  # no registration
    "mute_upon_entry": False,
    "host_video": True,
    "participant_video": True,
    "private_meeting": True,
}


class ZoomMeetingProvider:
    """Meetings of one Zoom host: a user id / e-mail (Server-to-Server) or ``me`` (user-level)."""

    name = "zoom"

    def __init__(self, api: ZoomApi, user_id: str) -> None:
        self.api = api
        self.user_id = user_id

    @staticmethod
    def _provided(body: dict[str, Any]) -> ProvidedMeeting:
        meeting_id, join_url = body.get("id"), body.get("join_url")
        if meeting_id is None or not isinstance(join_url, str):
            raise ZoomRejected("Zoom's answer lacks the meeting id or join URL")
        duration = body.get("duration")
        return ProvidedMeeting(
            str(meeting_id),
            join_url,
            parse_zoom_time(body.get("start_time")),
            duration if isinstance(duration, int) else None,
        )

    def create(self, spec: MeetingSpec) -> ProvidedMeeting:
        body = self.api.create_meeting(
            self.user_id,
            start=spec.start,
            topic=spec.topic,
            type=2,  # scheduled
            duration=spec.duration_minutes,
            timezone=spec.timezone,
            agenda=MARKER_PREFIX + spec.marker,
            password=spec.passcode,
            settings=dict(MEETING_SETTINGS),
        )
        return self._provided(body)

    def find(self, marker: str) -> ProvidedMeeting | None:
        wanted = MARKER_PREFIX + marker
        for item in self.api.list_meetings(self.user_id):
            if item.get("agenda") == wanted:
                # The listing has no passcode-bearing join URL guarantee: read the meeting itself.
                return self._provided(self.api.get_meeting(str(item["id"])))
        return None

    def reschedule(self, meeting_id: str, start: datetime, duration_minutes: int, timezone: str) -> None:
        self.api.update_meeting(meeting_id, start=start, duration=duration_minutes, timezone=timezone)

    def delete(self, meeting_id: str) -> None:
        self.api.delete_meeting(meeting_id)
