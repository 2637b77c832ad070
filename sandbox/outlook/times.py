"""Graph's ``dateTimeTimeZone`` values and the zone names it uses.

Graph writes ``dateTime`` without an offset and with seven fractional digits, next to a
``timeZone`` that is a Windows name ("W. Europe Standard Time"), an IANA name or "UTC". The
Windows -> IANA table comes from icalendar (CLDR's windowsZones data), not from Alliance code.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

_FRACTION = re.compile(r"\.(\d{6})\d+")


class BadTime(ValueError):
    """A dateTimeTimeZone the emulator cannot read; the message is Graph-like."""


def zone(name: str | None) -> tzinfo:
    """The zone a Graph time-zone name means (Windows or IANA); UTC when absent."""
    if not name or name in ("UTC", "tzone://Microsoft/Utc"):
        return UTC
    iana = WINDOWS_TO_OLSON.get(name, name)
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadTime(f"TimeZone '{name}' is not supported") from None


def parse_datetime_tz(value: Any) -> tuple[datetime, str]:
    """``{"dateTime", "timeZone"}`` -> (aware UTC instant, the zone name as given)."""
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise BadTime("start and end must be dateTimeTimeZone objects with a dateTime")
    name = value.get("timeZone") or "UTC"
    text = _FRACTION.sub(r".\1", value["dateTime"].replace("Z", "+00:00"))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadTime(f"Cannot convert the literal '{value['dateTime']}' to the expected type 'Edm.DateTime'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(name))
    return moment.astimezone(UTC), str(name)


def render(moment: datetime, zone_name: str) -> dict[str, str]:
    """An aware instant as Graph writes it in ``zone_name``."""
    local = moment.astimezone(zone(zone_name))
    return {"dateTime": local.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": zone_name}


def render_date(day: date, zone_name: str) -> dict[str, str]:
    """An all-day boundary: midnight of ``day``; all-day events ignore ``outlook.timezone``."""
    return {"dateTime": datetime.combine(day, time()).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": zone_name}


def iso_z(moment: datetime) -> str:
    """A DateTimeOffset in UTC (``originalStart``, ``lastModifiedDateTime``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["BadTime", "iso_z", "parse_datetime_tz", "render", "render_date", "zone"]
