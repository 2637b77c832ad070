"""Outlook calendar items as the emulator keeps them, and their expansion into instances.

Written from the Graph ``event`` resource documentation: an item is a ``singleInstance`` or a
``seriesMaster`` with a ``patternedRecurrence``; the calendar view shows a master as its
``occurrence`` instances, an instance that was changed becomes an ``exception`` (it keeps its
id and carries ``originalStart``), a deleted instance disappears from the view. ``changeKey``
changes on every change and ``@odata.etag`` is ``W/"<changeKey>"``. ``iCalUId`` differs for
each instance of a series (the docs say so), so the emulator derives it from the master's.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Any

from dateutil import rrule

from sandbox.outlook.bodies import preview
from sandbox.outlook.times import iso_z, render, render_date, zone

_WEEKDAYS = {
    "monday": rrule.MO,
    "tuesday": rrule.TU,
    "wednesday": rrule.WE,
    "thursday": rrule.TH,
    "friday": rrule.FR,
    "saturday": rrule.SA,
    "sunday": rrule.SU,
}
_MAX_INSTANCES = 5000  # a "noEnd" series is expanded only as far as the asked window anyway


class BadRecurrence(ValueError):
    """A patternedRecurrence the emulator does not understand."""


@dataclass
class Exception_:
    """The changed fields of one instance of a series (an ``exception``)."""

    start: datetime
    end: datetime
    subject: str | None = None
    change_key: str = ""


@dataclass
class Event:
    """One item of the mailbox's primary calendar (single event or series master)."""

    id: str  # the immutable id (Prefer: IdType="ImmutableId")
    rest_id: str  # the default (mutable) id; changes when the item moves to another folder
    ical_uid: str
    subject: str
    start: datetime  # aware UTC; for all-day items midnight UTC of the first day
    end: datetime
    zone_name: str  # originalStartTimeZone, as the client wrote it (Windows or IANA)
    change_key: str
    created: datetime
    modified: datetime
    seq: int  # the state's change counter at the last change
    body: str = ""
    body_type: str = "text"  # itemBody.contentType as written: text or html (bodies.present renders it)
    location: str = ""
    all_day: bool = False
    recurrence: dict[str, Any] | None = None
    exceptions: dict[datetime, Exception_] = field(default_factory=dict)  # original start -> changes
    deleted_instances: set[datetime] = field(default_factory=set)
    is_cancelled: bool = False
    is_online: bool = False
    online_provider: str = "unknown"
    join_url: str | None = None
    attendees: list[dict[str, Any]] = field(default_factory=list)
    show_as: str = "busy"
    extended: dict[str, str] = field(default_factory=dict)  # singleValueExtendedProperties id -> value

    @property
    def kind(self) -> str:
        return "seriesMaster" if self.recurrence else "singleInstance"


@dataclass(frozen=True)
class Instance:
    """One slot of the calendar view, frozen when a delta round is computed."""

    id: str
    rest_id: str
    type: str  # singleInstance | occurrence | exception
    start: datetime
    end: datetime
    all_day: bool
    fields: tuple[tuple[str, str], ...]  # the other properties, JSON-encoded, for rendering and hashing
    master_id: str | None = None
    master_rest_id: str | None = None
    original_start: datetime | None = None
    change_key: str = ""

    @cached_property
    def version(self) -> str:
        digest = hashlib.sha256(repr((self.type, self.start, self.end, self.fields)).encode()).hexdigest()
        return digest[:24]

    def render(self, time_zone: str, *, immutable: bool, skeletal: bool) -> dict[str, Any]:
        data = dict((k, json.loads(v)) for k, v in self.fields)
        zone_name = str(data.get("originalStartTimeZone") or "UTC")
        if self.all_day:
            start, end = render_date(self.start.date(), zone_name), render_date(self.end.date(), zone_name)
        else:
            start, end = render(self.start, time_zone), render(self.end, time_zone)
        out: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.event",
            "@odata.etag": f'W/"{self.change_key}"',
            "id": self.id if immutable else self.rest_id,
            "type": self.type,
            "start": start,
            "end": end,
        }
        master = self.master_id if immutable else self.master_rest_id
        if master:
            out["seriesMasterId"] = master
        if skeletal:
            # calendarView delta sends occurrences with only these properties; everything else
            # (subject, organizer, ...) has to be read from the series master.
            return out
        out.update(data)
        out["changeKey"] = self.change_key
        if self.original_start is not None:
            out["originalStart"] = iso_z(self.original_start)
        return out


def occurrence_id(master_id: str, original_start: datetime) -> str:
    raw = f"{master_id}|{iso_z(original_start)}".encode()
    return "AAMkOCC" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_occurrence_id(value: str) -> tuple[str, datetime] | None:
    if not value.startswith("AAMkOCC"):
        return None
    text = value[len("AAMkOCC") :]
    try:
        master, _, when = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode().partition("|")
        return master, datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (ValueError, UnicodeDecodeError):
        return None


def instance_uid(master_uid: str, original_start: datetime) -> str:
    # Exchange's GlobalObjectId puts the instance date inside the UID; here it is appended.
    return f"{master_uid}-{original_start:%Y%m%d%H%M%S}"


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def common_fields(event: Event, *, subject: str | None = None) -> dict[str, Any]:
    """Properties an instance shows (besides id, type, start, end)."""
    online = {"joinUrl": event.join_url} if event.join_url else None
    return {
        "subject": event.subject if subject is None else subject,
        "bodyPreview": preview(event.body_type, event.body),
        # As stored; graph.py renders it as the request prefers (HTML unless text is asked for).
        "body": {"contentType": event.body_type, "content": event.body},
        "location": {"displayName": event.location},
        "isAllDay": event.all_day,
        "isCancelled": event.is_cancelled,
        "showAs": event.show_as,
        "originalStartTimeZone": event.zone_name,
        "originalEndTimeZone": event.zone_name,
        "isOnlineMeeting": event.is_online,
        "onlineMeetingProvider": event.online_provider,
        "onlineMeeting": online,
        "attendees": event.attendees,
        "organizer": {"emailAddress": {"name": "Therapist", "address": "therapist@contoso.test"}},
        "createdDateTime": iso_z(event.created),
        "lastModifiedDateTime": iso_z(event.modified),
        "singleValueExtendedProperties": [{"id": k, "value": v} for k, v in sorted(event.extended.items())] or None,
    }


def _freeze(data: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((k, _json(v)) for k, v in sorted(data.items()) if v is not None)


def single_instance(event: Event) -> Instance:
    data = common_fields(event)
    data["iCalUId"] = event.ical_uid
    return Instance(
        id=event.id,
        rest_id=event.rest_id,
        type="singleInstance",
        start=event.start,
        end=event.end,
        all_day=event.all_day,
        fields=_freeze(data),
        change_key=event.change_key,
    )


def master_view(event: Event, time_zone: str, *, immutable: bool) -> dict[str, Any]:
    """A series master or single event as ``GET /me/events/{id}`` shows it."""
    data = common_fields(event)
    if event.all_day:
        start, end = render_date(event.start.date(), event.zone_name), render_date(event.end.date(), event.zone_name)
    else:
        start, end = render(event.start, time_zone), render(event.end, time_zone)
    out: dict[str, Any] = {
        "@odata.etag": f'W/"{event.change_key}"',
        "id": event.id if immutable else event.rest_id,
        "type": event.kind,
        "iCalUId": event.ical_uid,
        "changeKey": event.change_key,
        "start": start,
        "end": end,
        "recurrence": event.recurrence,
        **{k: v for k, v in data.items() if v is not None},
    }
    return out


def _rule(event: Event, local_start: datetime) -> rrule.rrule:
    recurrence = event.recurrence or {}
    pattern = recurrence.get("pattern") or {}
    span = recurrence.get("range") or {}
    kind = pattern.get("type")
    interval = int(pattern.get("interval") or 1)
    params: dict[str, Any] = {"dtstart": local_start, "interval": interval}
    if kind == "daily":
        freq = rrule.DAILY
    elif kind == "weekly":
        freq = rrule.WEEKLY
        days = pattern.get("daysOfWeek") or []
        try:
            params["byweekday"] = [_WEEKDAYS[d.lower()] for d in days] or None
        except (KeyError, AttributeError):
            raise BadRecurrence(f"unknown daysOfWeek {days!r}") from None
        params["wkst"] = _WEEKDAYS.get(str(pattern.get("firstDayOfWeek") or "sunday").lower(), rrule.SU)
    elif kind == "absoluteMonthly":
        freq = rrule.MONTHLY
        params["bymonthday"] = int(pattern.get("dayOfMonth") or local_start.day)
    elif kind == "absoluteYearly":
        freq = rrule.YEARLY
        params["bymonthday"] = int(pattern.get("dayOfMonth") or local_start.day)
        params["bymonth"] = int(pattern.get("month") or local_start.month)
    else:
        raise BadRecurrence(f"recurrence pattern type {kind!r} is not supported by the emulator")
    range_type = span.get("type") or "noEnd"
    if range_type == "endDate":
        until = date.fromisoformat(str(span.get("endDate")))
        params["until"] = datetime.combine(until, time(23, 59, 59))
    elif range_type == "numbered":
        params["count"] = int(span.get("numberOfOccurrences") or 1)
    elif range_type != "noEnd":
        raise BadRecurrence(f"recurrence range type {range_type!r} is not supported")
    return rrule.rrule(freq, **params)


def original_starts(event: Event, window_end: datetime) -> list[datetime]:
    """The original (UTC) starts of a master's instances up to ``window_end``, in the series' zone.

    Expansion happens in local time, so a weekly 18:00 stays 18:00 across daylight saving.
    """
    tz = UTC if event.all_day else zone(event.zone_name)
    local_start = event.start.astimezone(tz).replace(tzinfo=None)
    limit = window_end.astimezone(tz).replace(tzinfo=None)
    starts: list[datetime] = []
    for naive in _rule(event, local_start):
        if naive >= limit or len(starts) >= _MAX_INSTANCES:
            break
        starts.append(naive.replace(tzinfo=tz).astimezone(UTC))
    return starts


def series_instances(event: Event, window: tuple[datetime, datetime]) -> list[Instance]:
    """The instances of a master overlapping ``window`` (exceptions where they were moved to)."""
    # Exceptions may be moved far from their slot: look a year past the window for their originals.
    originals = original_starts(event, window[1] + timedelta(days=366))
    out: list[Instance] = []
    duration = event.end - event.start
    for original in originals:
        if original not in event.exceptions and not (original < window[1] and original + duration > window[0]):
            continue  # a plain occurrence sits at its original slot: outside the window
        instance = _instance(event, original)
        if instance is not None and instance.start < window[1] and instance.end > window[0]:
            out.append(instance)
    return out


def instance_at(event: Event, original: datetime) -> Instance | None:
    """The instance of a master whose original start is ``original`` (None if it has none)."""
    if original not in original_starts(event, original + timedelta(seconds=1)):
        return None
    return _instance(event, original)


def _instance(event: Event, original: datetime) -> Instance | None:
    if original in event.deleted_instances:
        return None
    duration = event.end - event.start
    exception = event.exceptions.get(original)
    start, end = (exception.start, exception.end) if exception else (original, original + duration)
    data = common_fields(event, subject=exception.subject if exception else None)
    data["iCalUId"] = instance_uid(event.ical_uid, original)
    change_key = exception.change_key if exception else f"{event.change_key}.{iso_z(original)}"
    return Instance(
        id=occurrence_id(event.id, original),
        rest_id=occurrence_id(event.rest_id, original),
        type="exception" if exception else "occurrence",
        start=start,
        end=end,
        all_day=event.all_day,
        fields=_freeze(data),
        master_id=event.id,
        master_rest_id=event.rest_id,
        original_start=original,
        change_key=hashlib.sha256(change_key.encode()).hexdigest()[:16],
    )


__all__ = [
    "BadRecurrence",
    "Event",
    "Exception_",
    "Instance",
    "instance_at",
    "master_view",
    "occurrence_id",
    "original_starts",
    "parse_occurrence_id",
    "series_instances",
    "single_instance",
]
