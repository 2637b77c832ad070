"""Graph events -> the sync engine's occurrences (pure functions, no I/O).

Identity (DESIGN.md): ``(iCalUID, original start)``.

- A ``singleInstance`` is ``(iCalUId, "")``.
- An ``occurrence`` or ``exception`` belongs to its series: ``(master's iCalUId, original
  start)``. Graph's own ``iCalUId`` differs for every instance of a series, so the master's
  is used. An exception carries ``originalStart``; a plain occurrence sits at its original
  slot by definition, so its start is its original start. A moved instance becomes an exception
  with the same original start, and keeps its identity (and the notes hanging off it).
- Delta sends occurrences skeletal (id, type, start, end, seriesMasterId): subject, location,
  attendees and the rest come from the series master.
- ``@removed`` carries only the Graph id: the mirror says which identity each id was mirrored as
  (``provider_id`` of its occurrences; integrations.outlook.provider).

Times are asked for in UTC (``Prefer: outlook.timezone="UTC"``); other zone names, Windows ones
included, are still read. All-day events ignore that preference: their dates are taken as is.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from core.sync.types import OccurrenceKey, RemoteOccurrence, Status, recurrence_id_for

log = logging.getLogger(__name__)

INSTANCE_TYPES = frozenset({"occurrence", "exception"})
# The label of the join-link block Alliance writes at the end of an event's body
# (integrations.outlook.writeback). Fixed wording: no name, no diagnosis, only the label and a link.
LABEL = "Video session: "
_TRAILING_BLOCK = re.compile(r"\s*" + re.escape(LABEL.strip()) + r"\s+https?://[^\s<>\"']+\s*\Z")
_FRACTION = re.compile(r"\.(\d{6})\d+")


@lru_cache(maxsize=512)
def _iana(name: str) -> str | None:
    if name in ("UTC", "tzone://Microsoft/Utc"):
        return "UTC"
    candidate = WINDOWS_TO_OLSON.get(name, name)
    try:
        ZoneInfo(candidate)
    except (ZoneInfoNotFoundError, ValueError):
        return None  # "tzone://Microsoft/Custom" and the like: no IANA equivalent
    return "UTC" if candidate in ("Etc/UTC", "Etc/GMT") else candidate


def iana_zone(name: Any) -> str | None:
    """The IANA name for a Graph zone name (Windows names like "W. Europe Standard Time", IANA, UTC)."""
    if not isinstance(name, str) or not name:
        return None
    return _iana(name)


def _zone(name: Any) -> tzinfo:
    iana = iana_zone(name)
    return ZoneInfo(iana) if iana and iana != "UTC" else UTC


def _from_iso(text: str) -> datetime:
    # Graph writes seven fractional digits; Python 3.11 reads them, older parsers need six.
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return datetime.fromisoformat(_FRACTION.sub(r".\1", text.replace("Z", "+00:00")))


def parse_time(value: Any, *, all_day: bool) -> datetime | None:
    """A ``dateTimeTimeZone`` as an aware UTC instant (all-day: midnight UTC of its date)."""
    if not isinstance(value, Mapping) or not isinstance(value.get("dateTime"), str):
        return None
    try:
        moment = _from_iso(value["dateTime"])
    except ValueError:
        return None
    if all_day:
        return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_zone(value.get("timeZone")))
    return moment.astimezone(UTC)


def _original_start(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = _from_iso(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def is_removed(item: Mapping[str, Any]) -> bool:
    return "@removed" in item


def master_id_of(item: Mapping[str, Any]) -> str | None:
    """The series master an instance needs (None for single events)."""
    if item.get("type") in INSTANCE_TYPES and isinstance(item.get("seriesMasterId"), str):
        return str(item["seriesMasterId"])
    return None


def _attendees(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    emails = set()
    for attendee in raw:
        if not isinstance(attendee, Mapping) or attendee.get("type") == "resource":  # rooms are not people
            continue
        address = (attendee.get("emailAddress") or {}).get("address")
        if isinstance(address, str) and address.strip():
            emails.add(address.strip().lower())
    return tuple(sorted(emails))


def join_url(item: Mapping[str, Any]) -> str:
    """The Teams (or other online meeting) join link of an event, if it has one."""
    meeting = item.get("onlineMeeting")
    if isinstance(meeting, Mapping) and isinstance(meeting.get("joinUrl"), str):
        return str(meeting["joinUrl"])
    legacy = item.get("onlineMeetingUrl")
    return legacy if isinstance(legacy, str) else ""


def own_text(text: str) -> str:
    """The therapist's own text: a body (or preview) without Alliance's join-link block at its end.

    Delta cannot expand the extended property that marks Alliance's write, so the block is known by
    its fixed label and one link at the very end; leaving it out makes the write's echo hash as the
    event did before it.
    """
    return _TRAILING_BLOCK.sub("", text)


def _description(item: Mapping[str, Any]) -> str:
    body = item.get("body")
    if isinstance(body, Mapping) and body.get("contentType") == "text" and isinstance(body.get("content"), str):
        return own_text(str(body["content"]))
    preview = item.get("bodyPreview")  # an HTML body: the plain-text preview instead of markup
    return own_text(preview) if isinstance(preview, str) else ""


def to_occurrence(item: Mapping[str, Any], master: Mapping[str, Any] | None) -> RemoteOccurrence | None:
    """One calendar-view item as an occurrence; ``master`` is its series master (for instances).

    None when the item cannot be placed (no identity or unreadable times); ids only in logs,
    since subjects may name a client.
    """
    graph_id = item.get("id")
    kind = item.get("type")
    merged: Mapping[str, Any] = {**(master or {}), **item} if kind in INSTANCE_TYPES else item
    all_day = bool(merged.get("isAllDay"))
    start = parse_time(item.get("start"), all_day=all_day)
    end = parse_time(item.get("end"), all_day=all_day)
    if start is None or end is None or end < start:
        log.warning("Outlook event %s has unreadable start or end; skipped", graph_id)
        return None
    if kind in INSTANCE_TYPES:
        uid = (master or {}).get("iCalUId")
        original = _original_start(item.get("originalStart")) if kind == "exception" else start
        if original is None and kind == "exception":
            original = start
        rid = recurrence_id_for(original.date() if all_day and original else original)
    else:
        uid = item.get("iCalUId")
        rid = ""
    if not isinstance(uid, str) or not uid:
        log.warning("Outlook event %s has no iCalUId (or its series master none); skipped", graph_id)
        return None
    location = merged.get("location")
    return RemoteOccurrence(
        key=OccurrenceKey(uid, rid),
        start=start,
        end=end,
        status=Status.CANCELLED if merged.get("isCancelled") else Status.CONFIRMED,
        all_day=all_day,
        timezone=iana_zone(merged.get("originalStartTimeZone")),
        provider_id=str(graph_id) if graph_id else None,
        title=str(merged.get("subject") or ""),
        description=_description(merged),
        location=str(location.get("displayName") or "") if isinstance(location, Mapping) else "",
        conference_url=join_url(merged),
        attendees=_attendees(merged.get("attendees")),
    )


def _utc_time(value: Any) -> datetime | None:
    """:func:`parse_time` of a timed ``dateTimeTimeZone`` already in UTC (what Alliance asks Graph for)."""
    if type(value) is dict and value.get("timeZone") == "UTC":
        text = value.get("dateTime")
        if type(text) is str:
            # Graph writes UTC times without an offset ("2026-05-04T08:15:30.0000000"): read with
            # a "Z" appended they parse straight to an aware UTC instant (0.2 us), where parsing
            # and then ``replace(tzinfo=UTC)`` took ~2 us, twice per event of a listing. A text
            # that already has an offset does not parse with the "Z" and takes the general path.
            try:
                return datetime.fromisoformat(text + "Z")
            except ValueError:
                pass
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                return parse_time(value, all_day=False)
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return parse_time(value, all_day=False)


def _fast_attendees(raw: Any) -> tuple[str, ...]:
    if type(raw) is not list:
        return _attendees(raw)
    emails = set()
    for attendee in raw:
        if type(attendee) is not dict:
            return _attendees(raw)
        if attendee.get("type") == "resource":
            continue
        address = attendee.get("emailAddress")
        if type(address) is not dict:
            return _attendees(raw)
        email = address.get("address")
        if type(email) is str:
            email = email.strip()
            if email:
                emails.add(email.lower())
        elif email is not None:
            return _attendees(raw)
    return tuple(sorted(emails))


def fast_occurrence(item: Mapping[str, Any], master: Mapping[str, Any] | None) -> RemoteOccurrence | None:
    """:func:`to_occurrence`, quicker for what Graph sends Alliance; the same result for any input.

    A full listing maps 10,000 items, nearly all plain JSON objects with UTC times (Alliance asks
    for ``outlook.timezone="UTC"``) and text bodies. For those, the checks ``to_occurrence`` makes
    through ``isinstance(..., Mapping)`` (an ABC check, the slowest part) are made on exact types;
    anything else (all-day events, exceptions, unreadable times, other shapes) is handed to
    ``to_occurrence`` itself. tests/integrations/outlook/test_outlook_mapping.py holds them equal.
    """
    if type(item) is not dict or (master is not None and type(master) is not dict):
        return to_occurrence(item, master)
    kind = item.get("type")
    instance = kind in INSTANCE_TYPES
    if kind == "exception":
        return to_occurrence(item, master)  # its original start is parsed apart: rare, the plain way
    merged: Mapping[str, Any] = {**master, **item} if instance and master else item
    if merged.get("isAllDay"):
        return to_occurrence(item, master)
    start, end = _utc_time(item.get("start")), _utc_time(item.get("end"))
    if start is None or end is None or end < start:
        return to_occurrence(item, master)  # it says why, and skips the item
    uid = (master.get("iCalUId") if master else None) if instance else item.get("iCalUId")
    if type(uid) is not str or not uid:
        return to_occurrence(item, master)
    body = merged.get("body")
    content = body.get("content") if type(body) is dict and body.get("contentType") == "text" else None
    description = own_text(content) if type(content) is str else _description(merged)
    location = merged.get("location")
    place = location.get("displayName") if type(location) is dict else None
    graph_id = item.get("id")
    return RemoteOccurrence(
        key=OccurrenceKey(uid, start.isoformat() if instance else ""),
        start=start,
        end=end,
        status=Status.CANCELLED if merged.get("isCancelled") else Status.CONFIRMED,
        all_day=False,
        timezone=iana_zone(merged.get("originalStartTimeZone")),
        provider_id=str(graph_id) if graph_id else None,
        title=str(merged.get("subject") or ""),
        description=description,
        location=str(place or "") if type(location) is dict else _location(location),
        conference_url=join_url(merged),
        attendees=_fast_attendees(merged.get("attendees")),
    )


def _location(location: Any) -> str:
    return str(location.get("displayName") or "") if isinstance(location, Mapping) else ""


__all__ = [
    "INSTANCE_TYPES",
    "LABEL",
    "fast_occurrence",
    "iana_zone",
    "is_removed",
    "join_url",
    "master_id_of",
    "own_text",
    "parse_time",
    "to_occurrence",
]
