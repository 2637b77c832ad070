"""The Google mapping reads an event's start and end the same way whatever shape they come in.

``to_occurrence`` reads timed events that carry their offset in one step and leaves every other
shape (offset-less times with a ``timeZone``, all-day dates, unreadable values) to the general
reader; the property holds both paths to the same instants and the same refusals.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from integrations.google.mapping import _parse_time, to_occurrence

MADRID = "Europe/Madrid"
moments = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1))
offsets = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))])


@st.composite
def event_times(draw: st.DrawFn) -> Any:
    moment = draw(moments)
    shape = draw(st.sampled_from(["offset", "zulu", "local", "date", "garbage", "not a dict", "empty"]))
    zone = draw(st.none() | st.sampled_from([MADRID, "America/New_York", "Not/AZone"]))
    if shape == "offset":
        value: Any = {"dateTime": moment.replace(tzinfo=draw(offsets)).isoformat()}
    elif shape == "zulu":
        value = {"dateTime": moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")}
    elif shape == "local":
        value = {"dateTime": moment.isoformat()}
    elif shape == "date":
        value = {"date": moment.date().isoformat()}
    elif shape == "garbage":
        value = {"dateTime": draw(st.sampled_from(["tomorrow", "2026-13-01T10:00:00+01:00", 17]))}
    elif shape == "not a dict":
        return draw(st.sampled_from([None, "2026-01-01T10:00:00Z", ["x"]]))
    else:
        value = {}
    if zone is not None and isinstance(value, dict):
        value["timeZone"] = zone
    return value


@given(start=event_times(), end=event_times())
def test_start_and_end_are_read_as_the_general_reader_reads_them(start: Any, end: Any) -> None:
    item = {"id": "ev1", "iCalUID": "ev1@google.com", "summary": "Session", "start": start, "end": end}
    expected_start, expected_end = _parse_time(start, MADRID), _parse_time(end, MADRID)

    occurrence = to_occurrence(item, MADRID)

    if expected_start is None or expected_end is None or expected_end[0] < expected_start[0]:
        assert occurrence is None
        return
    assert occurrence is not None
    assert (occurrence.start, occurrence.all_day) == expected_start
    assert occurrence.end == expected_end[0]
    assert occurrence.start.utcoffset() == timedelta(0)
