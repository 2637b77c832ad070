"""Google Calendar events -> the sync engine's occurrences and removals (pure functions, no I/O).

Identity (DESIGN.md): ``(iCalUID, original start)``. ``originalStartTime`` is set on every
instance of a series and never changes, so a moved instance keeps its identity; single events
have an empty recurrence id. The Google event id is only the ``provider_id`` lookup key.

Deleted events come back as tombstones that guarantee only ``id`` (and, for a cancelled
instance, ``recurringEventId`` + ``originalStartTime``) — no ``iCalUID``. Google's own events
have ``iCalUID == "<id>@google.com"``; imported ones keep their UID. :class:`IdentityIndex`
remembers the exceptions to that rule, and which ids are series, for the events mirrored so
far; it travels inside the cursor, so it is committed exactly with the pages it describes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.sync.types import OccurrenceKey, RemoteOccurrence, Status, recurrence_id_for
from integrations.google.writeback import own_text

log = logging.getLogger(__name__)

# Only regular events are appointments. Birthdays, working locations, out-of-office and focus
# time blocks, and events Gmail adds (flights, reservations) are not sessions.
APPOINTMENT_TYPES = frozenset({"default"})
_STATUSES = {"confirmed": Status.CONFIRMED, "tentative": Status.TENTATIVE}


def default_uid(event_id: str) -> str:
    """The iCalUID Google gives events created in Google Calendar."""
    return f"{event_id}@google.com"


@dataclass
class IdentityIndex:
    """What naming a tombstone needs: which ids are series, and UIDs that break Google's rule."""

    series: set[str] = field(default_factory=set)  # recurringEventIds seen on listed instances
    uids: dict[str, str] = field(default_factory=dict)  # event or series id -> iCalUID, irregular only

    def uid_of(self, event_id: str) -> str:
        return self.uids.get(event_id) or default_uid(event_id)

    def remember(self, item: Mapping[str, Any]) -> None:
        uid = item.get("iCalUID")
        series_id = item.get("recurringEventId")
        owner: Any
        if isinstance(series_id, str) and series_id:
            self.series.add(series_id)
            owner = series_id
        else:
            owner = item.get("id")
        if isinstance(owner, str) and isinstance(uid, str) and uid and uid != default_uid(owner):
            self.uids[owner] = uid

    def forget(self, event_id: str) -> None:
        self.series.discard(event_id)
        self.uids.pop(event_id, None)

    def as_json(self) -> dict[str, Any]:
        return {"series": sorted(self.series), "uids": dict(sorted(self.uids.items()))}

    @classmethod
    def from_json(cls, raw: Any) -> IdentityIndex:
        if not isinstance(raw, dict):
            return cls()
        series = raw.get("series") or []
        uids = raw.get("uids") or {}
        return cls(
            series={s for s in series if isinstance(s, str)},
            uids={k: v for k, v in uids.items() if isinstance(k, str) and isinstance(v, str)}
            if isinstance(uids, dict)
            else {},
        )


def is_cancelled(item: Mapping[str, Any]) -> bool:
    return item.get("status") == "cancelled"


def is_mapping(value: Any) -> bool:
    # Parsed JSON is plain dicts: the exact type test first, the ABC's (much slower) only for others.
    return type(value) is dict or isinstance(value, Mapping)


def _parse_time(value: Any, fallback_zone: str) -> tuple[datetime, bool] | None:
    """An ``EventDateTime`` as (aware UTC instant, all-day), or None when unreadable."""
    if not is_mapping(value):
        return None
    try:
        text = value.get("dateTime")
        if text:
            moment = datetime.fromisoformat(text if type(text) is str else str(text))
            if moment.tzinfo is None:  # an offset-less time is local to its timeZone
                moment = moment.replace(tzinfo=_zone(value.get("timeZone") or fallback_zone))
            return moment.astimezone(UTC), False
        if value.get("date"):
            day = date.fromisoformat(str(value["date"]))
            # RemoteOccurrence's convention: all-day spans are midnight UTC of their dates.
            return datetime(day.year, day.month, day.day, tzinfo=UTC), True
    except ValueError:
        return None
    return None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _recurrence_id(item: Mapping[str, Any], fallback_zone: str) -> str | None:
    """The normalised original start of an instance; "" for a single event; None if unreadable."""
    original = item.get("originalStartTime")
    if not original:
        return ""
    parsed = _parse_time(original, fallback_zone)
    if parsed is None:
        return None
    moment, all_day = parsed
    return recurrence_id_for(moment.date() if all_day else moment)


def removal_key(item: Mapping[str, Any], index: IdentityIndex, calendar_zone: str) -> OccurrenceKey | None:
    """The identity a cancelled item removes; None when it names nothing usable.

    A bare tombstone of a known series (with ``singleEvents=true`` Google may report a deleted
    series by its master id alone) names no single occurrence either: see :func:`page_changes`.
    """
    event_id = item.get("id")
    series_id = item.get("recurringEventId")
    if isinstance(series_id, str) and series_id:
        rid = _recurrence_id(item, calendar_zone)
        if not rid:
            log.warning("Google cancelled instance %s has no readable originalStartTime; ignored", event_id)
            return None
        uid = item.get("iCalUID") or index.uid_of(series_id)
        return OccurrenceKey(str(uid), rid)
    if not isinstance(event_id, str) or not event_id:
        return None
    if event_id in index.series:
        return None
    return OccurrenceKey(str(item.get("iCalUID") or index.uid_of(event_id)), "")


def _attendees(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    emails = {
        str(a["email"]).strip().lower()
        for a in raw
        if is_mapping(a) and a.get("email") and not a.get("resource")  # rooms are not people
    }
    return tuple(sorted(emails))


def conference_url(item: Mapping[str, Any]) -> str:
    """The video entry point: ``hangoutLink`` (Meet), else the first video entry of ``conferenceData``."""
    link = item.get("hangoutLink")
    if isinstance(link, str) and link:
        return link
    conference = item.get("conferenceData")
    if conference is not None and is_mapping(conference):
        for entry in conference.get("entryPoints") or []:
            if is_mapping(entry) and entry.get("entryPointType") == "video" and entry.get("uri"):
                return str(entry["uri"])
    return ""


def _fast_instant(value: Any) -> datetime | None:
    """The UTC instant of an ``EventDateTime`` whose ``dateTime`` carries its offset (what Google
    sends for timed events); None for anything else, which :func:`_parse_time` then reads."""
    if type(value) is dict:
        text = value.get("dateTime")
        if type(text) is str:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                return None
            if moment.tzinfo is not None:
                return moment.astimezone(UTC)
    return None


def to_occurrence(item: Mapping[str, Any], calendar_zone: str) -> RemoteOccurrence | None:
    """A live (not cancelled) event as an occurrence; None for non-appointments and unreadable items."""
    get = item.get
    event_id = get("id")
    if get("eventType", "default") not in APPOINTMENT_TYPES:
        return None
    uid = get("iCalUID")
    raw_start = get("start")
    raw_end = get("end")
    # Timed events with an offset, nearly all of a calendar, read in one step; the rest as before.
    start_at = _fast_instant(raw_start)
    end_at = _fast_instant(raw_end) if start_at is not None else None
    start: tuple[datetime, bool] | None
    end: tuple[datetime, bool] | None
    if start_at is not None and end_at is not None:
        start, end = (start_at, False), (end_at, False)
    else:
        start, end = _parse_time(raw_start, calendar_zone), _parse_time(raw_end, calendar_zone)
    rid = _recurrence_id(item, calendar_zone)
    if not uid or start is None or end is None or rid is None or end[0] < start[0]:
        # Ids only in logs: titles and descriptions may name a client.
        log.warning("Google event %s has no usable iCalUID, start, end or original start; skipped", event_id)
        return None
    start_zone = raw_start.get("timeZone") if raw_start is not None else None  # a mapping: it parsed
    return RemoteOccurrence(
        key=OccurrenceKey(uid if type(uid) is str else str(uid), rid),
        start=start[0],
        end=end[0],
        status=_STATUSES.get(str(get("status", "confirmed")), Status.CONFIRMED),
        all_day=start[1],
        timezone=str(start_zone or calendar_zone) or None,
        provider_id=str(event_id) if event_id else None,
        title=str(get("summary") or ""),
        # Without Alliance's own join-link block: the echo of a write-back is not a change.
        description=own_text(item),
        location=str(get("location") or ""),
        conference_url=conference_url(item),
        attendees=_attendees(get("attendees")),
    )


@dataclass
class PageChanges:
    upserts: list[RemoteOccurrence] = field(default_factory=list)
    removals: list[OccurrenceKey] = field(default_factory=list)
    # Series whose set of instances may have changed: id -> iCalUID (see page_changes).
    series: dict[str, str] = field(default_factory=dict)


def page_changes(
    items: Iterable[Mapping[str, Any]], calendar_zone: str, index: IdentityIndex, *, tombstones: bool = True
) -> PageChanges:
    """The upserts and removals of one page of ``events.list``; ``index`` learns from the page.

    ``tombstones`` False: cancelled items are passed over (a complete listing's sweep cancels
    whatever it did not list, so its tombstones add nothing).

    ``series`` names the series an incremental listing cannot fully describe. A live instance
    may be one edited instance, or one of the instances of a series that was moved or cut short
    ("this and following events"): then the instances whose original slot vanished are never
    reported. A bare tombstone of a known series, or a series turned into a single event, says
    even less. The provider lists those series' instances again.
    """
    changes = PageChanges()
    upserts = changes.upserts
    for item in items:
        if not is_mapping(item):
            continue
        cancelled = is_cancelled(item)
        if cancelled and not tombstones:
            continue
        event_id = item.get("id")
        series_id = item.get("recurringEventId")
        if cancelled:
            # A deleted event, a deleted series' instance or one cancelled instance of a live
            # series: all end as a cancelled occurrence (the engine never deletes rows).
            key = removal_key(item, index, calendar_zone)
            if key is not None:
                changes.removals.append(key)
                if isinstance(series_id, str) and series_id:
                    # One cancelled instance, or the instances of a deleted series as they were
                    # last: those it had at the previous sync may have been other slots.
                    changes.series[series_id] = key.ical_uid
            elif isinstance(event_id, str) and event_id in index.series:
                changes.series[event_id] = index.uid_of(event_id)
            if not series_id and isinstance(event_id, str):
                index.forget(event_id)
            continue
        occurrence = to_occurrence(item, calendar_zone)
        if occurrence is None:
            continue
        upserts.append(occurrence)
        if isinstance(series_id, str) and series_id:
            changes.series[series_id] = occurrence.key.ical_uid
        elif isinstance(event_id, str) and event_id in index.series:  # a series became a single event
            changes.series[event_id] = occurrence.key.ical_uid
            index.series.discard(event_id)
        index.remember(item)
    return changes


__all__ = [
    "APPOINTMENT_TYPES",
    "IdentityIndex",
    "PageChanges",
    "conference_url",
    "default_uid",
    "is_cancelled",
    "is_mapping",
    "page_changes",
    "removal_key",
    "to_occurrence",
]
