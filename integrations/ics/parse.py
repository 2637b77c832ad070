"""ICS bytes -> the occurrences inside a window.

icalendar parses (and resolves TZIDs: IANA names, Windows names, VTIMEZONE definitions),
recurring_ical_events expands RRULE/RDATE/EXDATE/RECURRENCE-ID and applies X-WR-TIMEZONE. This
module only prepares what those libraries leave open and maps their output onto
:class:`RemoteOccurrence`:

- floating times (no TZID, no ``Z``) get the feed's X-WR-TIMEZONE, else the configured fallback,
  *before* expansion, so a weekly floating 18:00 stays 18:00 local across DST;
- a TZID nobody knows (no IANA/Windows name, no VTIMEZONE) leaves icalendar with a naive time:
  those times are read as UTC, with one warning per TZID, instead of crashing the sync;
- identity: ``(UID, RECURRENCE-ID)``, where single events (no RRULE/RDATE, no overrides) have
  an empty recurrence id.

Per-instance work is kept small: fields that do not vary between the instances of a component
are computed once per component, and zone names once per tzinfo.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
import zoneinfo
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

import icalendar
import recurring_ical_events
from icalendar.cal import Component
from icalendar.prop import vDDDLists, vDDDTypes
from icalendar.timezone.tzid import tzid_from_tzinfo
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON
from recurring_ical_events.adapters.event import EventAdapter
from recurring_ical_events.occurrence import Occurrence
from recurring_ical_events.selection.name import ComponentsWithName

from core.sync.types import OccurrenceKey, RemoteOccurrence, SourceError, Status, recurrence_id_for

log = logging.getLogger(__name__)

_BOM = b"\xef\xbb\xbf"
_STATUSES = {"CANCELLED": Status.CANCELLED, "TENTATIVE": Status.TENTATIVE}


def resolve_zone(name: str) -> zoneinfo.ZoneInfo | None:
    """The IANA zone ``name`` means, or None.

    Accepts IANA names, Windows names (Outlook/Exchange exports: ``W. Europe Standard Time``) and
    "globally unique" TZIDs ending in an IANA name (``/mozilla.org/20050126_1/Europe/Madrid``).
    """
    cleaned = name.strip().strip("/")
    candidates = [cleaned, WINDOWS_TO_OLSON.get(cleaned, "")]
    if name.strip().startswith("/"):
        parts = cleaned.split("/")
        candidates += ["/".join(parts[i:]) for i in range(1, len(parts))]
    for candidate in candidates:
        if candidate:
            try:
                return zoneinfo.ZoneInfo(candidate)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                continue
    return None


def check_icalendar(body: bytes) -> None:
    """Refuse bodies that are evidently not iCalendar (an HTML login page, an empty answer)."""
    head = body[:1024].removeprefix(_BOM).lstrip()
    if head[:15].upper() == b"BEGIN:VCALENDAR":
        return
    if not head:
        raise SourceError("not a valid iCalendar feed: the source is empty")
    lowered = head.lower()
    if lowered.startswith(b"<") or b"<html" in lowered:
        raise SourceError(
            "the source answered with an HTML page (a login or error page?) instead of an iCalendar feed; "
            "check that the address is the calendar's public or secret iCal address"
        )
    raise SourceError("not a valid iCalendar feed: it does not start with BEGIN:VCALENDAR")


def parse_calendar(body: bytes) -> icalendar.Calendar:
    """Parse ``body`` into one calendar (several VCALENDAR blocks in one feed are merged)."""
    check_icalendar(body)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calendars = icalendar.Calendar.from_ical(body, multiple=True)
    except Exception as exc:
        # Untrusted bytes: the parser may fail in many ways. Its message quotes the offending
        # line, which may hold a client's name, so only the kind of failure is reported.
        raise SourceError(f"not a valid iCalendar feed: {_parse_failure(exc)}") from None
    if not calendars:
        raise SourceError("not a valid iCalendar feed: no VCALENDAR found")
    calendar = calendars[0]
    for extra in calendars[1:]:
        calendar.subcomponents.extend(extra.subcomponents)
    return calendar


def _parse_failure(exc: Exception) -> str:
    text = str(exc)
    if "Content line could not be parsed" in text:
        return "a line could not be parsed"
    if "no components" in text.lower() or "exactly one" in text.lower():
        return "no complete VCALENDAR found (is the feed cut off?)"
    return f"the parser failed ({type(exc).__name__})"


class _Adapter(EventAdapter):  # type: ignore[misc]  # the library ships no type hints
    """Keeps a public handle on the source component (the library's own is private)."""

    def __init__(self, component: Component) -> None:
        super().__init__(component)
        self.component = component


class _Instance(Occurrence):  # type: ignore[misc]
    """An expanded instance; we read it directly instead of asking for a per-instance copy."""

    def __init__(self, adapter: _Adapter, start: Any = None, end: Any = None, sequence: int = -1) -> None:
        super().__init__(adapter, start, end, sequence)
        self.adapter = adapter


_SELECT_EVENTS = ComponentsWithName("VEVENT", adapter=_Adapter, occurrence=_Instance)


class _Preparer:
    """Fixes what the expansion library leaves open, in place, before expanding."""

    def __init__(self, calendar: icalendar.Calendar, fallback: zoneinfo.ZoneInfo) -> None:
        self.calendar = calendar
        self.floating_zone: tzinfo = fallback
        self.feed_zone: tzinfo | None = None  # X-WR-TIMEZONE, applied here
        self.recurring_uids: set[str] = set()
        self.unknown_tzids: set[str] = set()
        self.dropped = 0
        self.derived_uids = 0

    def run(self) -> None:
        self._x_wr_timezone()
        keep: list[Component] = []
        master_zones: dict[str, tzinfo] = {}
        for event in self.calendar.subcomponents:
            if event.name != "VEVENT":
                continue
            start = self._dt(event, "DTSTART")
            if start is None:
                continue
            if not str(event.get("UID", "")).strip():
                event["UID"] = _derived_uid(event)
                self.derived_uids += 1
            uid = str(event["UID"])
            if "RRULE" in event or "RDATE" in event or "RECURRENCE-ID" in event:
                self.recurring_uids.add(uid)
            if isinstance(start, datetime) and "RECURRENCE-ID" not in event:
                zone = start.tzinfo or self._zone_for(event["DTSTART"].params.get("TZID"))
                master_zones[uid] = self.feed_zone if self.feed_zone and _is_utc(start) else zone
            keep.append(event)
        kept = {id(event) for event in keep if self._localize(event, master_zones)}
        events = sum(1 for c in self.calendar.subcomponents if c.name == "VEVENT")
        if len(kept) != events:
            self.dropped = events - len(kept)
            self.calendar.subcomponents = [
                c for c in self.calendar.subcomponents if c.name != "VEVENT" or id(c) in kept
            ]
            log.warning("skipped %d event(s) without a readable DTSTART", self.dropped)
        if self.derived_uids:
            log.warning("%d event(s) have no UID; using a UID derived from their start and title", self.derived_uids)
        for tzid in sorted(self.unknown_tzids):
            log.warning("unknown time zone %r in the feed; its times are read as UTC", tzid)

    def _x_wr_timezone(self) -> None:
        # Google-style X-WR-TIMEZONE: UTC and floating times mean times in that zone (so a
        # weekly UTC series keeps its local wall time). recurring_ical_events would apply it
        # through x_wr_timezone, which copies every event it changes (most of a Google export);
        # applying it here, in the pass that already visits every event, costs nothing extra.
        value = self.calendar.get("X-WR-TIMEZONE")
        if value is None:
            return
        del self.calendar["X-WR-TIMEZONE"]
        name = str(value).strip()
        zone = resolve_zone(name) if name else None
        if zone is None:
            log.warning("unknown X-WR-TIMEZONE %r in the feed; ignoring it", name)
            return
        self.floating_zone = self.feed_zone = zone

    @staticmethod
    def _dt(event: Component, name: str) -> Any:
        prop = event.get(name)
        if prop is None:
            return None
        try:
            return prop.dt
        except Exception:  # icalendar 7 keeps unparsable values as "broken" properties
            return None

    def _zone_for(self, tzid: str | None) -> tzinfo:
        """The zone of a naive time: floating -> feed zone; unresolvable TZID -> UTC."""
        if tzid is None:
            return self.floating_zone
        self.unknown_tzids.add(tzid)
        return UTC

    def _localize(self, event: Component, master_zones: dict[str, tzinfo]) -> bool:
        """Give every naive DTSTART/DTEND/RECURRENCE-ID a zone; False if a value is unreadable."""
        start_zone: tzinfo | None = None
        for name in ("DTSTART", "DTEND", "RECURRENCE-ID"):
            prop = event.get(name)
            if prop is None:
                continue
            try:
                value = prop.dt
            except Exception:
                if name == "DTEND":  # a broken end: fall back to the default length
                    del event[name]
                    continue
                return False
            if not isinstance(value, datetime):
                continue
            if value.tzinfo is not None:
                if self.feed_zone is not None and _is_utc(value):
                    event[name] = vDDDTypes(value.astimezone(self.feed_zone))
                continue
            tzid = prop.params.get("TZID")
            if name == "RECURRENCE-ID" and tzid is None:
                # An override's floating RECURRENCE-ID names an instance of its master: read it in
                # the master's zone so the instance keeps the identity it has without the override.
                zone = master_zones.get(str(event["UID"])) or self.floating_zone
            else:
                zone = self._zone_for(tzid)
            event[name] = vDDDTypes(value.replace(tzinfo=zone))
            if name == "DTSTART":
                start_zone = zone
        if start_zone is not None:
            self._fix_until(event, start_zone)
        if self.feed_zone is not None:
            for name in ("RDATE", "EXDATE"):
                prop = event.get(name)
                if prop is not None:
                    event[name] = (
                        [_in_zone(p, self.feed_zone) for p in prop]
                        if isinstance(prop, list)
                        else _in_zone(prop, self.feed_zone)
                    )
        return True

    @staticmethod
    def _fix_until(event: Component, zone: tzinfo) -> None:
        # RFC 5545 3.3.10: with a floating DTSTART, UNTIL is floating too. Now that DTSTART has a
        # zone, UNTIL must become UTC; the expansion library would otherwise read it as UTC as is,
        # dropping the last instance in zones west of Greenwich.
        rules = event.get("RRULE")
        for rule in rules if isinstance(rules, list) else [rules] if rules is not None else []:
            untils = rule.get("UNTIL")
            if untils and isinstance(untils[0], datetime) and untils[0].tzinfo is None:
                rule["UNTIL"] = [untils[0].replace(tzinfo=zone).astimezone(UTC)]


def _is_utc(value: datetime) -> bool:
    return value.tzinfo is UTC or (value.utcoffset() == timedelta(0) and (value.tzname() or "").upper() == "UTC")


def _in_zone(values: vDDDLists, zone: tzinfo) -> vDDDLists:
    """An RDATE/EXDATE list with its UTC times expressed in ``zone`` (same instants)."""
    try:
        dts = [d.dt for d in values.dts]
    except Exception:
        return values
    if any(isinstance(d, tuple) for d in dts) or not any(isinstance(d, datetime) and _is_utc(d) for d in dts):
        return values  # periods, dates and zoned times stay as they are
    return vDDDLists([d.astimezone(zone) if isinstance(d, datetime) and _is_utc(d) else d for d in dts])


def _derived_uid(event: Component) -> str:
    # Stable across syncs as long as the event keeps its start and title.
    start = event["DTSTART"].to_ical()
    seed = (
        (start if isinstance(start, bytes) else str(start).encode()) + b"\x00" + str(event.get("SUMMARY", "")).encode()
    )
    return f"alliance-derived-{hashlib.sha256(seed).hexdigest()[:32]}"


def _attendees(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    seen: dict[str, None] = {}
    for item in items:
        text = str(item).strip()
        if text[:7].lower() == "mailto:":
            text = text[7:]
        if text:
            seen.setdefault(text, None)
    return tuple(seen)


class _Static:
    """The fields every instance of one component shares, computed once."""

    __slots__ = (
        "attendees",
        "conference_url",
        "description",
        "fixed_rid",
        "location",
        "recurring",
        "status",
        "title",
        "uid",
        "url",
    )

    def __init__(self, component: Component, recurring_uids: set[str]) -> None:
        get = component.get
        self.uid = str(get("UID"))
        self.recurring = self.uid in recurring_uids
        self.status = _STATUSES.get(str(get("STATUS", "")).strip().upper(), Status.CONFIRMED)
        self.title = str(get("SUMMARY", ""))
        self.description = str(get("DESCRIPTION", ""))
        self.location = str(get("LOCATION", ""))
        self.url = str(get("URL", ""))
        self.conference_url = str(get("X-GOOGLE-CONFERENCE", ""))
        self.attendees = _attendees(get("ATTENDEE"))
        # An override (RECURRENCE-ID without RANGE=THISANDFUTURE) is exactly one instance.
        self.fixed_rid: str | None = None
        rid = get("RECURRENCE-ID")
        if rid is not None and str(rid.params.get("RANGE", "")).upper() != "THISANDFUTURE":
            self.fixed_rid = _recurrence_id(rid.dt)


def _recurrence_id(original: date | datetime) -> str:
    if isinstance(original, datetime):
        if original.tzinfo is None:
            original = original.replace(tzinfo=UTC)
        return recurrence_id_for(original)
    return recurrence_id_for(datetime(original.year, original.month, original.day), all_day=True)


class _Zones:
    """tzinfo -> IANA name (or None), looked up once per tzinfo object."""

    def __init__(self) -> None:
        self._names: dict[int, tuple[tzinfo, str | None]] = {}

    def name(self, tz: tzinfo | None) -> str | None:
        if tz is None:
            return None
        hit = self._names.get(id(tz))
        if hit is not None and hit[0] is tz:
            return hit[1]
        name = self._lookup(tz)
        self._names[id(tz)] = (tz, name)  # keeps tz alive, so its id stays unique
        return name

    @staticmethod
    def _lookup(tz: tzinfo) -> str | None:
        if tz is UTC:
            return "UTC"
        key = getattr(tz, "key", None)
        if isinstance(key, str):
            return key
        # A zone defined by a VTIMEZONE: keep it when its TZID names an IANA or Windows zone.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tzid = tzid_from_tzinfo(tz)
        zone = resolve_zone(tzid) if tzid else None
        return zone.key if zone is not None else None


def _to_utc(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def expand(
    calendar: icalendar.Calendar, window: tuple[datetime, datetime], fallback: zoneinfo.ZoneInfo
) -> list[RemoteOccurrence]:
    """Every occurrence of ``calendar`` overlapping ``window`` (modifies ``calendar`` in place)."""
    preparer = _Preparer(calendar, fallback)
    preparer.run()
    try:
        query = recurring_ical_events.of(calendar, components=[_SELECT_EVENTS])
        instances: Iterable[_Instance] = [i for series in query.series for i in series.between(*window)]
    except Exception as exc:
        # A series the library cannot expand (an unreadable RRULE, dates mixed with times...).
        # Failing the whole feed is deliberate: skipping the series would make the sync cancel
        # all of its sessions.
        raise SourceError(
            f"not a valid iCalendar feed: a recurring event cannot be expanded ({type(exc).__name__})"
        ) from None
    statics: dict[int, _Static] = {}
    zones = _Zones()
    recurring_uids = preparer.recurring_uids
    found: dict[OccurrenceKey, RemoteOccurrence] = {}
    zero = timedelta(0)
    for instance in instances:
        adapter = instance.adapter
        component = adapter.component
        static = statics.get(id(component))
        if static is None:
            static = statics[id(component)] = _Static(component, recurring_uids)
        start = instance.start
        all_day = not isinstance(start, datetime)
        if not static.recurring:
            rid = ""
        elif static.fixed_rid is not None:
            rid = static.fixed_rid
        else:
            move = adapter.move_recurrences_by  # non-zero only below a RANGE=THISANDFUTURE override
            rid = _recurrence_id(start - move if move != zero else start)
        key = OccurrenceKey(static.uid, rid)
        found[key] = RemoteOccurrence(
            key=key,
            start=_to_utc(start),
            end=_to_utc(instance.end),
            status=static.status,
            all_day=all_day,
            timezone=None if all_day else zones.name(start.tzinfo),
            title=static.title,
            description=static.description,
            location=static.location,
            url=static.url,
            conference_url=static.conference_url,
            attendees=static.attendees,
        )
    return list(found.values())


def parse_occurrences(
    body: bytes, window: tuple[datetime, datetime], fallback: zoneinfo.ZoneInfo
) -> list[RemoteOccurrence]:
    """Parse ``body`` and return its occurrences overlapping ``window``."""
    calendar = parse_calendar(body)
    try:
        return expand(calendar, window, fallback)
    except SourceError:
        raise
    except Exception as exc:
        # Whatever else a hostile or odd feed provokes in the libraries must still reach the
        # therapist as one line, and must not quote the feed (exception texts often do).
        raise SourceError(f"not a valid iCalendar feed: an event could not be read ({type(exc).__name__})") from None


__all__ = ["check_icalendar", "expand", "parse_calendar", "parse_occurrences", "resolve_zone"]
