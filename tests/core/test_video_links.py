"""Finding the video-call join link in an event's free-text fields."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.video_links import detect_video_url, find_video_url

JOIN_LINKS = {
    "zoom": "https://zoom.us/j/85012345678",
    "zoom with password": "https://us02web.zoom.us/j/85012345678?pwd=aBcD1234eFgH",
    "zoom vanity subdomain": "https://praxis-berger.zoom.us/j/85012345678",
    "zoom personal room": "https://praxis-berger.zoom.us/my/dr.berger",
    "zoom webinar": "https://us06web.zoom.us/w/81234567890?tk=abc-DEF_1.2",
    "zoom web client": "https://zoom.us/wc/join/85012345678",
    "zoomgov": "https://zoomgov.com/j/1601234567",
    "zoomgov subdomain": "https://agency.zoomgov.com/j/1601234567?pwd=x9",
    "meet": "https://meet.google.com/abc-defg-hij",
    "meet with authuser": "https://meet.google.com/abc-defg-hij?authuser=1&hs=122",
    "teams": (
        "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NjE4ZDA%40thread.v2/0"
        "?context=%7b%22Tid%22%3a%2272f9%22%2c%22Oid%22%3a%2203c4%22%7d"
    ),
    "teams live": "https://teams.live.com/meet/9876543210123?p=AbCdEf",
    "webex personal room": "https://praxis.webex.com/meet/jdoe",
    "webex meeting": "https://praxis.webex.com/praxis/j.php?MTID=m0123456789abcdef",
    "webex join": "https://praxis.webex.com/join/jdoe",
    "whereby": "https://whereby.com/dr-berger",
    "jitsi": "https://meet.jit.si/Praxis-Berger-Room42",
    "doxy": "https://doxy.me/drberger",
    "doxy clinic subdomain": "https://praxis.doxy.me/drberger",
}


@pytest.mark.parametrize("url", JOIN_LINKS.values(), ids=JOIN_LINKS.keys())
def test_join_link_alone(url: str) -> None:
    assert find_video_url(url) == url


@pytest.mark.parametrize("url", JOIN_LINKS.values(), ids=JOIN_LINKS.keys())
@pytest.mark.parametrize(
    "template",
    [
        "Join the session: {} see you soon",
        "Join the session: {}",
        "Link: {}.",
        "Link ({}).",
        "Links: {}, backup phone +43 1 234",
        "Really? {}!",
        "Where: {};",
        "<{}>",
        '"{}"',
        "'{}'",
        "[{}]",
        "Zoom:\n{}\nMeeting ID: 850 1234 5678",
        '<p>Join: <a href="{}" target="_blank">click here</a></p>',
        "<p>Join:<br>{}</p>",
    ],
    ids=lambda t: t[:12],
)
def test_join_link_in_running_text_and_html(template: str, url: str) -> None:
    assert find_video_url(template.format(url)) == url


def test_case_insensitive_host() -> None:
    assert find_video_url("HTTPS://US02WEB.ZOOM.US/J/123") == "HTTPS://US02WEB.ZOOM.US/J/123"


def test_the_earliest_link_in_a_text_wins() -> None:
    text = f"Main: {JOIN_LINKS['whereby']} fallback: {JOIN_LINKS['zoom']} or {JOIN_LINKS['meet']}"
    assert find_video_url(text) == JOIN_LINKS["whereby"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Session with A.",
        "https://zoom.us",
        "https://zoom.us/",
        "https://zoom.us/pricing",
        "https://zoom.us/signin#/login",
        "https://us02web.zoom.us/download",
        "http://zoom.us.evil.example/j/123",
        "https://zoom.example.com/j/123",
        "https://www.google.com/",
        "https://www.google.com/search?q=zoom+meeting",
        "https://meet.google.com/",
        "https://meet.google.com/landing",
        "https://teams.microsoft.com/",
        "https://teams.microsoft.com/l/chat/0/0?users=a@b.c",
        "https://www.webex.com/",
        "https://whereby.com/",
        "https://whereby.com/information/pricing",
        "https://praxis.webex.com/meeting-center",
        "https://doxy.me/sign-in",
        "https://meet.jit.si/",
        "https://doxy.me/",
        "zoom.us/j/123 without a scheme",
    ],
)
def test_non_join_links_are_ignored(text: str) -> None:
    assert find_video_url(text) is None


def test_html_entities_in_a_link_are_decoded() -> None:
    # Google and Outlook send HTML descriptions; "&amp;" inside href is an escaped "&".
    html = '<a href="https://us02web.zoom.us/j/85012345678?pwd=abc&amp;uname=Dr">Join</a>'
    assert find_video_url(html) == "https://us02web.zoom.us/j/85012345678?pwd=abc&uname=Dr"


def test_zoom_host_start_link_is_not_a_join_link() -> None:
    assert find_video_url("Start: https://us02web.zoom.us/s/85012345678?zak=eyJ0eXAiOiJKV1Qi") is None


# --- detect_video_url: fields in order of trust -------------------------------------------------


def test_fields_are_tried_in_order() -> None:
    conference, url, location, description = (
        JOIN_LINKS["meet"],
        JOIN_LINKS["whereby"],
        JOIN_LINKS["zoom"],
        JOIN_LINKS["teams"],
    )
    assert detect_video_url(conference, url, location, description) == conference
    assert detect_video_url("", url, location, description) == url
    assert detect_video_url("", "", location, description) == location
    assert detect_video_url("", "", "", description) == description


def test_a_field_without_a_join_link_falls_through() -> None:
    assert (
        detect_video_url("", "https://praxis.example/booking", "Room 4", f"Zoom: {JOIN_LINKS['zoom']}")
        == (JOIN_LINKS["zoom"])
    )


def test_no_fields_or_no_link() -> None:
    assert detect_video_url() is None
    assert detect_video_url("", "", "Berggasse 19, Vienna", "Bring the forms") is None


# --- robustness --------------------------------------------------------------------------------

FRAGMENTS = [
    *JOIN_LINKS.values(),
    "https://",
    "zoom.us/j/",
    "meet.google.com/",
    "webex.com/meet",
    ".",
    ",",
    ")",
    ">",
    '"',
    "&amp;",
    "<a href=",
    " ",
    "\n",
]
texts = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=12).map("".join),
)


@given(texts)
def test_arbitrary_text_never_crashes(text: str) -> None:
    found = find_video_url(text)
    if found is not None:
        assert found.lower().startswith("https://")
        assert not any(c.isspace() for c in found)
        assert found[-1] not in ".,;:!?)]>'\""
        # A found link is found again, unchanged, on its own.
        assert find_video_url(found) == found


@given(st.lists(texts, max_size=4))
def test_detect_returns_the_first_field_with_a_link(fields: list[str]) -> None:
    expected = next((u for u in map(find_video_url, fields) if u), None)
    assert detect_video_url(*fields) == expected
