"""Parsing what the API takes in query strings and bodies, with 422 problems that name the field."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from fastapi.exceptions import RequestValidationError

__all__ = ["field_error", "parse_instant", "parse_occurrence_instant", "window"]


def field_error(location: str, name: str, message: str) -> RequestValidationError:
    """A 422 about one field (answered as a ValidationProblem naming it, never echoing its value)."""
    return RequestValidationError([{"loc": (location, name), "msg": message, "type": "value_error"}])


def parse_instant(value: str, location: str, name: str) -> datetime:
    """An aware UTC instant from an ISO date (midnight UTC) or date-time (UTC when naive)."""
    try:
        parsed = datetime.fromisoformat(value)
        aware = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return aware.astimezone(UTC)
    except (ValueError, OverflowError):
        # OverflowError: year 1 with a positive offset (or 9999 with a negative one) has no UTC instant.
        raise field_error(location, name, "must be an ISO 8601 date or date-time") from None


def parse_occurrence_instant(value: str, location: str, name: str) -> datetime | date:
    """A date (an all-day occurrence) or an instant, as ``alliance assign --occurrence`` takes it."""
    if len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise field_error(location, name, "must be an ISO 8601 date or date-time") from None
    return parse_instant(value, location, name)


def window(
    start: str | None,
    end: str | None,
    *,
    default_days: int | None,
    location: str = "query",
    names: Sequence[str] = ("from", "to"),
) -> tuple[datetime | None, datetime | None]:
    """The ``[from, to)`` window of a listing; with ``default_days``, from defaults to today (UTC) and
    to to that many days later, like ``alliance events``."""
    first = parse_instant(start, location, names[0]) if start is not None else None
    last = parse_instant(end, location, names[1]) if end is not None else None
    if default_days is not None:
        if first is None:
            first = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        if last is None:
            try:
                last = first + timedelta(days=default_days)
            except OverflowError:
                raise field_error(
                    location, names[0], f"leaves no room for the default {default_days}-day window"
                ) from None
    if first is not None and last is not None and last <= first:
        raise field_error(location, names[1], f"must be after '{names[0]}'")
    return first, last
