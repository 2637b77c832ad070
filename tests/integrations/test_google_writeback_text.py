"""The join-link block as pure text: whatever the therapist wrote, the block comes off exactly."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from integrations.google.writeback import PROPERTY, _patch_for, own_text

_links = st.from_regex(r"https://[a-z]{1,12}\.example\.org/j/[A-Za-z0-9_-]{8,40}", fullmatch=True)


def _apply(event: dict[str, Any], link: str) -> dict[str, Any]:
    body = _patch_for(event, link)
    if body is None:
        return event
    return {**event, "description": body["description"], "extendedProperties": body["extendedProperties"]}


@given(text=st.text(max_size=200), first=_links, second=_links)
def test_the_therapists_text_survives_any_number_of_link_writes(text: str, first: str, second: str) -> None:
    event: dict[str, Any] = {"description": text} if text else {}
    once = _apply(event, first)
    assert once["extendedProperties"]["private"][PROPERTY] == first
    assert own_text(once) == text.rstrip()
    assert _patch_for(once, first) is None  # idempotent
    twice = _apply(once, second)
    assert own_text(twice) == text.rstrip()
    assert twice["description"].count(second) == 1 + text.count(second)
    assert first not in twice["description"].removeprefix(text.rstrip()) or first in second


@given(text=st.text(max_size=100), link=_links)
def test_without_the_private_marker_nothing_is_taken_away(text: str, link: str) -> None:
    assert own_text({"description": f"{text}\n\nVideo session: {link}"}) == f"{text}\n\nVideo session: {link}"
