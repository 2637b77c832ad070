"""Ratings in core: validation, the server's total, one per session, encrypted comment; call ends; phases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.links import CallTimes, LinkPolicy, Phase, issue_link, open_link, phase, rating_opens_at
from core.ratings import (
    InvalidRating,
    MeasureFileError,
    get_rating,
    licensed_measure,
    list_client_ratings,
    load_licensed_measure,
    parse_score,
    read_comment,
    submit_rating,
)
from core.store import OutboxEvent, Store
from tests.core.test_privacy_at_rest import _raw_dump
from tests.links.world import LinkWorld, make_settings

START = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)
END = START + timedelta(minutes=50)
POLICY = LinkPolicy()
GOOD = {"bond": "9.5", "goals": "8", "approach": "7.3", "overall": "10"}


def _page(store: Store) -> tuple[LinkWorld, int, int]:
    world = LinkWorld(store)
    code = world.client()
    session_id = world.session("evt-1", START, code)
    page = open_link(store, issue_link(store, world.therapist, session_id), policy=POLICY, now=START)
    assert page is not None
    return world, session_id, page.client_id


@pytest.mark.parametrize("text", ["0", "0.0", "7", "7.5", "10", "10.0", " 3.3 "])
def test_scores_from_0_to_10_with_one_decimal_are_accepted(text: str) -> None:
    assert 0 <= parse_score("bond", text) <= 10


@pytest.mark.parametrize("text", ["", None, "-1", "10.1", "11", "7.55", "1e1", "nan", "inf", "7,5", "07.5x", "+5"])
def test_anything_else_is_refused_naming_the_item(text: str | None) -> None:
    with pytest.raises(InvalidRating) as info:
        parse_score("goals", text)
    assert info.value.field == "goals"


def test_the_total_is_computed_by_the_server_and_the_first_rating_stands(store: Store) -> None:
    world, session_id, client_id = _page(store)
    record, created = submit_rating(store, session_id, client_id, GOOD, "Felt rushed at the end", now=END)
    assert created and record.total == pytest.approx(34.8)
    assert (record.bond, record.goals, record.approach, record.overall) == (9.5, 8.0, 7.3, 10.0)
    again, created_again = submit_rating(store, session_id, client_id, {k: "0" for k in GOOD}, "changed my mind")
    assert not created_again and again.total == pytest.approx(34.8)
    stored = get_rating(store, session_id)
    assert stored is not None and read_comment(store, stored) == "Felt rushed at the end"
    assert b"Felt rushed" not in _raw_dump(store)
    assert [r.session_id for r in list_client_ratings(store, world.therapist, client_id)] == [session_id]
    other = LinkWorld(store, "other@alliance.test", "home")
    assert list_client_ratings(store, other.therapist, client_id) == []


def test_an_invalid_item_writes_nothing(store: Store) -> None:
    _world, session_id, client_id = _page(store)
    with pytest.raises(InvalidRating) as info:
        submit_rating(store, session_id, client_id, {**GOOD, "approach": "10.5"})
    assert info.value.field == "approach"
    assert get_rating(store, session_id) is None


def test_a_session_ended_event_opens_the_rating_at_the_real_end(store: Store, tmp_path: Path) -> None:
    world, session_id, _client = _page(store)
    settings = make_settings(tmp_path / "home")
    world.run_jobs(settings)
    real_end = START + timedelta(minutes=35)
    with store.session() as session:
        session.add(
            OutboxEvent(
                kind="session.ended",
                therapist_id=world.therapist,
                connection_id=world.connection,
                payload={"session_id": session_id, "started_at": START.isoformat(), "ended_at": real_end.isoformat()},
            )
        )
    world.run_jobs(settings)
    token = issue_link(store, world.therapist, session_id)
    page = open_link(store, token, policy=POLICY, now=real_end)
    assert page is not None and page.call == CallTimes(START, real_end, False)
    assert rating_opens_at(page.end, page.call, POLICY) == real_end


def test_phases_spelled_out() -> None:
    at = {"end": END, "policy": POLICY}
    assert phase(cancelled=True, rated=True, call=None, now=END, **at) is Phase.CANCELLED
    assert phase(cancelled=False, rated=True, call=None, now=START, **at) is Phase.RATED
    assert phase(cancelled=False, rated=False, call=None, now=END + timedelta(minutes=4), **at) is Phase.BEFORE
    assert phase(cancelled=False, rated=False, call=None, now=END + timedelta(minutes=5), **at) is Phase.RATING
    no_show = CallTimes(None, None, True)
    assert phase(cancelled=False, rated=False, call=no_show, now=END + timedelta(hours=1), **at) is Phase.NO_RATING
    short = CallTimes(START, START + timedelta(minutes=9), False)
    assert phase(cancelled=False, rated=False, call=short, now=END + timedelta(hours=1), **at) is Phase.NO_RATING
    ten = CallTimes(START, START + timedelta(minutes=10), False)
    assert phase(cancelled=False, rated=False, call=ten, now=START + timedelta(minutes=10), **at) is Phase.RATING


@given(
    offset=st.integers(min_value=-3 * 24 * 60, max_value=3 * 24 * 60),
    call_minutes=st.one_of(st.none(), st.integers(min_value=0, max_value=120)),
    no_show=st.booleans(),
)
def test_the_rating_never_opens_for_a_no_show_a_short_call_or_before_the_end(
    offset: int, call_minutes: int | None, no_show: bool
) -> None:
    now = START + timedelta(minutes=offset)
    call = (
        None
        if call_minutes is None and not no_show
        else CallTimes(
            START if call_minutes is not None else None,
            START + timedelta(minutes=call_minutes) if call_minutes is not None else None,
            no_show,
        )
    )
    result = phase(cancelled=False, rated=False, end=END, call=call, policy=POLICY, now=now)
    if result is Phase.RATING:
        assert not no_show
        assert call_minutes is None or call_minutes >= POLICY.min_call_minutes
        real_end = START + timedelta(minutes=call_minutes) if call_minutes is not None else None
        assert now >= (real_end if real_end is not None else END + timedelta(minutes=POLICY.rating_delay_minutes))


MEASURE = """
name = "Session Rating Scale (SRS)"
copyright = "(c) Licensed text, loaded by a licensed practice"
[locales.en.bond]
prompt = "LICENSED bond prompt"
low = "low a"
high = "high a"
[locales.en.goals]
prompt = "LICENSED goals prompt"
low = "low b"
high = "high b"
[locales.en.approach]
prompt = "LICENSED approach prompt"
low = "low c"
high = "high c"
[locales.en.overall]
prompt = "LICENSED overall prompt"
low = "low d"
high = "high d"
"""


def test_licensed_text_loads_only_with_the_attestation_and_a_complete_file(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "srs.toml"
    path.write_text(MEASURE)
    with pytest.raises(MeasureFileError, match="attest-license"):
        load_licensed_measure(store, path, attest_license=False)
    assert licensed_measure(store) is None
    broken = tmp_path / "broken.toml"
    broken.write_text(
        MEASURE.replace('[locales.en.overall]\nprompt = "LICENSED overall prompt"', "[locales.en.overall]")
    )
    with pytest.raises(MeasureFileError, match=r"locales\.en\.overall\.prompt"):
        load_licensed_measure(store, broken, attest_license=True)
    with pytest.raises(MeasureFileError, match="cannot read"):
        load_licensed_measure(store, tmp_path / "missing.toml", attest_license=True)
    assert load_licensed_measure(store, path, attest_license=True) == "Session Rating Scale (SRS)"
    loaded = licensed_measure(store)
    assert loaded is not None and loaded.items_for("en-GB") is not None and loaded.items_for("es") is None
