"""Times as the Calendar API writes them, and recurrence expansion.

An event's ``start`` / ``end`` / ``originalStartTime`` are ``EventDateTime`` objects: either
``{"date": "2026-10-06"}`` (all-day, end exclusive) or ``{"dateTime": RFC3339, "timeZone": IANA}``
where the offset may be left out only when ``timeZone`` is given. Recurring series are expanded in
the zone of their ``start.timeZone`` on wall-clock time (a weekly 18:00 in Europe/Madrid stays at
18:00 across a DST change) with dateutil's RFC 5545 rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rruleset, rrulestr

from sandbox.google.errors import ApiError, bad_request


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``ValueError`` when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def parse_rfc3339(value: str, *, param: str) -> datetime:
    """An RFC 3339 timestamp with mandatory offset (query parameters such as ``timeMin``)."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError as exc:
        raise bad_request(f"Invalid value for: {param}", location=param) from exc
    if parsed.tzinfo is None:
        raise bad_request(f"Invalid value for: {param}", location=param)
    return parsed.replace(microsecond=0)  # "milliseconds may be provided but are ignored"


def format_datetime(value: datetime, tz: ZoneInfo) -> str:
    """``value`` in ``tz`` as Google writes event times: ``...+02:00``, or ``...Z`` in UTC."""
    local = value.astimezone(tz)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    offset = local.utcoffset() or timedelta(0)
    if offset == timedelta(0) and tz.key in ("UTC", "Etc/UTC", "GMT", "Etc/GMT"):
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def format_timestamp(value: datetime) -> str:
    """``updated`` / ``created``: UTC with milliseconds, ``2026-10-06T16:00:00.123Z``."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class EventTime:
    """A parsed ``EventDateTime``: a date (all-day) or an aware datetime, plus its ``timeZone``."""

    day: date | None = None
    moment: datetime | None = None
    tz: str | None = None

    @property
    def all_day(self) -> bool:
        return self.day is not None

    @classmethod
    def parse(cls, raw: Any, field: str) -> EventTime:
        if not isinstance(raw, dict):
            raise bad_request(f"Missing {field} time.", "required")
        tz_name = raw.get("timeZone") or None
        if tz_name is not None:
            try:
                zone(tz_name)
            except ValueError as exc:
                raise bad_request(f"Invalid time zone definition for {field} time.") from exc
        if raw.get("date") and not raw.get("dateTime"):
            try:
                return cls(day=date.fromisoformat(raw["date"]), tz=tz_name)
            except (TypeError, ValueError) as exc:
                raise bad_request(f"Invalid {field} time.") from exc
        if not raw.get("dateTime"):
            raise bad_request(f"Missing {field} time.", "required")
        try:
            moment = datetime.fromisoformat(str(raw["dateTime"]).replace("z", "Z"))
        except ValueError as exc:
            raise bad_request(f"Invalid {field} time.") from exc
        if moment.tzinfo is None:
            if tz_name is None:
                raise bad_request(f"Missing time zone definition for {field} time.", "required")
            moment = moment.replace(tzinfo=zone(tz_name))
        return cls(moment=moment.replace(microsecond=0), tz=tz_name)

    def instant(self, fallback: ZoneInfo) -> datetime:
        """The start of this time as an aware datetime (all-day: midnight in ``fallback``)."""
        if self.day is not None:
            return datetime.combine(self.day, time(), fallback)
        assert self.moment is not None
        return self.moment

    def render(self, out_tz: ZoneInfo) -> dict[str, str]:
        if self.day is not None:
            return {"date": self.day.isoformat()}
        assert self.moment is not None
        rendered = {"dateTime": format_datetime(self.moment, out_tz)}
        if self.tz:
            rendered["timeZone"] = self.tz
        return rendered

    def shift(self, delta: timedelta) -> EventTime:
        if self.day is not None:
            return EventTime(day=self.day + delta, tz=self.tz)
        assert self.moment is not None
        return EventTime(moment=self.moment + delta, tz=self.tz)

    def instance_suffix(self) -> str:
        """The part after ``_`` in an instance id: ``20261006T160000Z`` or ``20261006``."""
        if self.day is not None:
            return self.day.strftime("%Y%m%d")
        assert self.moment is not None
        return self.moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

    def same_slot(self, other: EventTime) -> bool:
        if self.all_day or other.all_day:
            return self.day == other.day
        return self.moment == other.moment


def duration(start: EventTime, end: EventTime) -> timedelta:
    if start.day is not None and end.day is not None:
        return end.day - start.day
    assert start.moment is not None and end.moment is not None
    return end.moment - start.moment


# ---------------------------------------------------------------------------------------------
# Recurrence

_UNTIL = re.compile(r"UNTIL=([0-9]{8}(?:T[0-9]{6}Z?)?)", re.IGNORECASE)


def _localize_until(rule: str, series_tz: ZoneInfo, all_day: bool) -> str:
    """Rewrite ``UNTIL`` as a floating local time: dateutil wants it naive for a naive DTSTART."""

    def fix(match: re.Match[str]) -> str:
        raw = match.group(1).upper()
        if len(raw) == 8:  # a date: the whole day counts
            return f"UNTIL={raw}" if all_day else f"UNTIL={raw}T235959"
        if raw.endswith("Z"):
            moment = datetime.strptime(raw, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).astimezone(series_tz)
            return "UNTIL=" + moment.strftime("%Y%m%dT%H%M%S")
        return f"UNTIL={raw}"

    return _UNTIL.sub(fix, rule)


def _parse_date_list(line: str, series_tz: ZoneInfo) -> tuple[list[datetime], list[date]]:
    """RDATE/EXDATE values as naive local datetimes in the series zone, and plain dates."""
    head, _, values = line.partition(":")
    params = dict(p.split("=", 1) for p in head.split(";")[1:] if "=" in p)
    value_tz = zone(params["TZID"]) if "TZID" in params else series_tz
    moments: list[datetime] = []
    days: list[date] = []
    for raw in values.split(","):
        raw = raw.strip().upper()
        if not raw:
            continue
        if len(raw) == 8:
            days.append(datetime.strptime(raw, "%Y%m%d").date())
            continue
        if raw.endswith("Z"):
            moment = datetime.strptime(raw, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        else:
            moment = datetime.strptime(raw, "%Y%m%dT%H%M%S").replace(tzinfo=value_tz)
        moments.append(moment.astimezone(series_tz).replace(tzinfo=None))
    return moments, days


def validate_recurrence(lines: Any) -> list[str]:
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise bad_request("Invalid recurrence rule.", location="recurrence")
    for line in lines:
        name = line.split(":", 1)[0].split(";", 1)[0].upper()
        if name not in ("RRULE", "EXRULE", "RDATE", "EXDATE"):
            raise bad_request("Invalid recurrence rule.", location="recurrence")
    return lines


def expand(
    start: EventTime,
    recurrence: list[str],
    fallback_tz: ZoneInfo,
    *,
    until: datetime | None,
    limit: int,
) -> Iterator[EventTime]:
    """The original start times of a series' occurrences, in order, below ``until`` (exclusive).

    Expansion runs on wall-clock time in the series' zone (``start.timeZone``; ``fallback_tz`` for
    all-day series) and stops after ``limit`` occurrences.
    """
    series_tz = zone(start.tz) if (start.tz and not start.all_day) else fallback_tz
    first = start.instant(fallback_tz).astimezone(series_tz).replace(tzinfo=None)
    rules = rruleset()
    excluded_days: set[date] = set()
    try:
        for line in recurrence:
            name, _, body = line.partition(":")
            kind = name.split(";", 1)[0].upper()
            if kind in ("RRULE", "EXRULE"):
                parsed = rrulestr(_localize_until(body, series_tz, start.all_day), dtstart=first)
                assert isinstance(parsed, rrule)
                (rules.rrule if kind == "RRULE" else rules.exrule)(parsed)
            elif kind in ("RDATE", "EXDATE"):
                moments, days = _parse_date_list(line, series_tz)
                if kind == "RDATE":
                    for moment in moments:
                        rules.rdate(moment)
                    for day in days:
                        rules.rdate(datetime.combine(day, first.time()))
                else:
                    for moment in moments:
                        rules.exdate(moment)
                    excluded_days.update(days)
    except (ValueError, KeyError, AssertionError) as exc:
        raise ApiError(400, "invalid", "Invalid recurrence rule.", location="recurrence") from exc
    rules.rdate(first)  # DTSTART is always the first occurrence (RFC 5545)
    count = 0
    for local in rules:
        if count >= limit:
            return
        if local.date() in excluded_days:
            continue
        if start.all_day:
            occurrence = EventTime(day=local.date(), tz=start.tz)
        else:
            occurrence = EventTime(moment=local.replace(tzinfo=series_tz), tz=start.tz)
        if until is not None and occurrence.instant(fallback_tz) >= until:
            return
        count += 1
        yield occurrence


def parse_instance_suffix(suffix: str, all_day: bool, tz: str | None) -> EventTime | None:
    try:
        if all_day:
            return EventTime(day=datetime.strptime(suffix, "%Y%m%d").date(), tz=tz)
        moment = datetime.strptime(suffix, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return EventTime(moment=moment, tz=tz)
