"""Property: ``fast_occurrence`` (what the provider maps Graph items with) gives what ``to_occurrence`` gives.

Items are drawn around the shapes Graph sends (UTC times with seven fractional digits, Windows and IANA
zone names, skeletal occurrences with their masters, text and HTML bodies, Alliance's join-link block)
and off them (offsets, "Z", unreadable times, all-day, exceptions, missing or odd-typed fields,
read-only mappings), so both the quick path and every hand-over to the plain one are exercised.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from integrations.outlook.mapping import LABEL, fast_occurrence, to_occurrence

_moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31))
_zones = st.sampled_from(
    [
        *("UTC", "UTC", "UTC", "W. Europe Standard Time", "Pacific Standard Time", "tzone://Microsoft/Utc"),
        *("Etc/GMT", "Europe/Madrid", "tzone://Microsoft/Custom", "Nowhere Standard Time", ""),
    ]
)


@st.composite
def _date_time(draw: st.DrawFn) -> Any:
    moment = draw(_moments)
    text = draw(
        st.sampled_from(
            [
                moment.strftime("%Y-%m-%dT%H:%M:%S") + ".0000000",  # what Graph writes
                moment.isoformat(),
                moment.strftime("%Y-%m-%dT%H:%M:%S") + ".1234567Z",
                moment.strftime("%Y-%m-%dT%H:%M:%S") + "+02:00",
                moment.strftime("%Y-%m-%d"),
                "not a time",
            ]
        )
    )
    return draw(st.one_of(st.just(text), st.just(text), st.just(text), st.none(), st.integers()))


@st.composite
def _time_value(draw: st.DrawFn) -> Any:
    zone = "UTC" if draw(st.integers(0, 3)) else draw(st.one_of(_zones, st.none()))
    value: dict[str, Any] = {"dateTime": draw(_date_time()), "timeZone": zone}
    if draw(st.integers(0, 2)):
        return value
    if draw(st.integers(0, 9)) == 0:
        del value[draw(st.sampled_from(["dateTime", "timeZone"]))]
    return draw(st.sampled_from([value, value, value, MappingProxyType(value), None, "2026-01-01T10:00:00"]))


_texts = st.one_of(st.text(max_size=12), st.sampled_from(["Session", "  ", f"Notes\n\n{LABEL}https://meet.example/x "]))
_optional_text = st.one_of(_texts, st.none(), st.integers(0, 3))


@st.composite
def _attendees(draw: st.DrawFn) -> Any:
    def one() -> Any:
        address = draw(
            st.one_of(st.sampled_from(["Client@Example.org", " a@b.c ", "", "  "]), st.none(), st.integers())
        )
        email = draw(st.sampled_from([{"address": address}, {"address": address}, {}, None]))
        entry = {"emailAddress": email, "type": draw(st.sampled_from(["required", "optional", "resource", None]))}
        return draw(st.sampled_from([entry, entry, entry, MappingProxyType(entry), "x"]))

    people = [one() for _ in range(draw(st.integers(0, 3)))]
    return draw(st.sampled_from([people, people, people, None, "a@b.c"]))


@st.composite
def _fields(draw: st.DrawFn) -> dict[str, Any]:
    """The content fields an event or its series master may carry (each may be missing)."""
    body = draw(
        st.one_of(
            st.fixed_dictionaries({"contentType": st.just("text"), "content": _optional_text}),
            st.fixed_dictionaries({"contentType": st.just("html"), "content": st.just("<p>x</p>")}),
            st.none(),
        )
    )
    meeting = draw(
        st.sampled_from([None, {"joinUrl": "https://teams.microsoft.com/l/meetup-join/1"}, {"joinUrl": None}, "x"])
    )
    candidates: dict[str, Any] = {
        "iCalUId": draw(st.one_of(st.sampled_from(["uid-1", "uid-2", "uid-1", ""]), st.none(), st.integers(0, 2))),
        "subject": draw(_optional_text),
        "body": body,
        "bodyPreview": draw(_optional_text),
        "location": draw(st.one_of(st.fixed_dictionaries({"displayName": _optional_text}), st.none(), _texts)),
        "attendees": draw(_attendees()),
        "onlineMeeting": meeting,
        "onlineMeetingUrl": draw(st.one_of(st.none(), st.just("https://legacy.example/j"))),
        "isCancelled": draw(st.one_of(st.booleans(), st.none())),
        "isAllDay": draw(st.sampled_from([False, False, False, False, False, False, True, None, 0, 1])),
        "originalStartTimeZone": draw(st.one_of(_zones, st.none())),
    }
    return {key: value for key, value in candidates.items() if draw(st.integers(0, 5)) > 0}


def _graph_time(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S") + ".0000000", "timeZone": "UTC"}


@st.composite
def _item_and_master(draw: st.DrawFn) -> tuple[Any, Any]:
    """A Graph-shaped item (and master), then a few of its fields replaced by anything plausible or not."""
    kind = draw(st.sampled_from(["singleInstance", "singleInstance", "occurrence", "occurrence", "exception"]))
    start = draw(_moments)
    end = start + timedelta(minutes=draw(st.integers(0, 600)))
    item: dict[str, Any] = {"id": draw(st.sampled_from(["AAMk1", "AAMk2"])), "type": kind}
    item |= {"start": _graph_time(start), "end": _graph_time(end)}
    content = {**draw(_fields()), "iCalUId": "uid-1", "isAllDay": False}
    master: Any = None
    if kind == "singleInstance":
        item |= content
    else:
        item |= {"seriesMasterId": "master-1", "originalStart": start.strftime("%Y-%m-%dT%H:%M:%SZ")}
        master = content
        if kind == "exception" or draw(st.integers(0, 4)) == 0:
            item |= draw(_fields())
    perturbations = draw(st.lists(st.integers(0, 9), max_size=3))
    for choice in perturbations:
        target = item if choice % 2 or not isinstance(master, dict) else master
        if choice in (0, 1):
            target["isAllDay"] = draw(st.sampled_from([True, None, 0, 1]))
        elif choice == 2:
            item[draw(st.sampled_from(["start", "end"]))] = draw(_time_value())
        elif choice == 3:  # the same instant written another way (or nearly: an offset shifts it)
            which = draw(st.sampled_from(["start", "end"]))
            moment = start if which == "start" else end
            text = draw(
                st.sampled_from(
                    [
                        moment.isoformat(),
                        moment.isoformat() + "Z",
                        moment.strftime("%Y-%m-%dT%H:%M:%S") + ".1234567+00:00",
                        moment.strftime("%Y-%m-%dT%H:%M:%S") + "-01:00",
                        moment.strftime("%Y-%m-%dT%H:%M:%S") + ".0000000+01:00",
                    ]
                )
            )
            item[which] = {"dateTime": text, "timeZone": draw(st.one_of(st.just("UTC"), _zones))}
        elif choice in (4, 5):
            target["iCalUId"] = draw(st.one_of(st.sampled_from(["", "uid-2"]), st.none(), st.integers(0, 2)))
        elif choice == 6:
            item["type"] = draw(st.sampled_from(["seriesMaster", None, 3, "occurrence", "exception"]))
        elif choice == 7:
            item["originalStart"] = draw(st.one_of(st.none(), _date_time()))
        elif choice == 8:
            master = draw(st.sampled_from([None, {}, MappingProxyType(master or {})]))
        else:
            item.pop(draw(st.sampled_from(["id", "start", "end", "type"])), None)
    if draw(st.integers(0, 15)) == 0:
        return MappingProxyType(item), master
    return item, master


def _outcome(item: Any, master: Any) -> str:
    try:
        occurrence = to_occurrence(item, master)
    except Exception as exc:  # the quick path must fail the same way too
        return f"raised {type(exc).__name__}"
    # repr: every field, and the instants' zones (tzinfo), not only their equality.
    return repr(occurrence)


def _fast_outcome(item: Any, master: Any) -> str:
    try:
        occurrence = fast_occurrence(item, master)
    except Exception as exc:
        return f"raised {type(exc).__name__}"
    return repr(occurrence)


@settings(max_examples=400)
@given(_item_and_master())
def test_the_quick_mapping_equals_the_plain_one(pair: tuple[Any, Any]) -> None:
    item, master = pair
    plain = _outcome(item, master)
    event("raises" if plain.startswith("raised") else f"mapped: {plain != 'None'}")
    assert _fast_outcome(item, master) == plain


def test_graph_shaped_items_take_the_quick_path_and_keep_their_fields() -> None:
    start = datetime(2026, 11, 28, 16, tzinfo=UTC)
    master = {
        "iCalUId": "series@x",
        "subject": "Weekly",
        "location": {"displayName": "Room 2"},
        "attendees": [{"emailAddress": {"address": " Client@Example.org "}, "type": "required"}],
        "body": {"contentType": "text", "content": f"Bring the form\n{LABEL}https://meet.example/x"},
        "originalStartTimeZone": "W. Europe Standard Time",
    }
    occurrence = {
        "id": "AAMk1",
        "type": "occurrence",
        "seriesMasterId": "m",
        "start": {"dateTime": "2026-11-28T16:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2026-11-28T16:50:00.0000000", "timeZone": "UTC"},
    }
    mapped = fast_occurrence(occurrence, master)
    assert mapped is not None and mapped == to_occurrence(occurrence, master)
    assert (mapped.key.ical_uid, mapped.key.recurrence_id) == ("series@x", start.isoformat())
    assert (mapped.start, mapped.end - mapped.start) == (start, timedelta(minutes=50))
    assert mapped.title == "Weekly" and mapped.location == "Room 2" and mapped.timezone == "Europe/Berlin"
    assert mapped.description == "Bring the form" and mapped.attendees == ("client@example.org",)


@pytest.mark.parametrize(
    "item",
    [
        {"id": "a", "type": "singleInstance", "iCalUId": "u", "start": {"dateTime": "x", "timeZone": "UTC"}},
        {"id": "b", "type": "singleInstance", "start": {"dateTime": "2026-01-01T10:00:00", "timeZone": "UTC"}},
    ],
)
def test_an_item_that_cannot_be_placed_is_skipped_and_logged_the_same_way(
    item: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    item = {**item, "end": item["start"]}
    with caplog.at_level(logging.WARNING, logger="integrations.outlook.mapping"):
        assert to_occurrence(item, None) is None
        plain = [r.getMessage() for r in caplog.records]
        caplog.clear()
        assert fast_occurrence(item, None) is None
    assert [r.getMessage() for r in caplog.records] == plain and plain
