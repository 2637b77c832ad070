"""Content hashes must not change between versions: a changed hash makes every mirrored
occurrence look edited, and the next sync would rewrite them all and emit an update each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from core.sync.hashing import content_hash
from core.sync.types import OccurrenceKey, RemoteOccurrence, Status

START = datetime(2026, 3, 29, 9, 30, tzinfo=UTC)
KEY = b"k" * 32

# Hashes written by the version before the per-row speed-ups (hmac.new + json.dumps, every text
# split into lines): stored hashes in existing mirrors look like these.
CASES = [
    (
        RemoteOccurrence(
            OccurrenceKey("a@x"), START, START + timedelta(minutes=50), title="Session 1", timezone="Europe/Madrid"
        ),
        "b0a204153bfac1415ac9ca143243181e1f89ed715e0bc8a7b8ac664f16d628c1",
        "373f9082d23dc672c31532a93b9c570c48ccd9093d8faaa0696df4155bb43610",
    ),
    (
        RemoteOccurrence(
            OccurrenceKey("b@x", "2026-03-29T09:30:00+00:00"),
            START.astimezone(timezone(timedelta(hours=2))),
            START + timedelta(hours=1),
            status=Status.TENTATIVE,
            title="  Sesión con A. M.  ",
            description="Línea 1  \r\nLínea 2\t\r\n\r\n",
            location="Calle Mayor, 3\n",
            url=" https://example.org/x ",
            conference_url="https://meet.google.com/abc-defg-hij",
            attendees=("B@Example.org", " a@example.org ", ""),
        ),
        "2c15945489bdc08877c73a5efb7b6aa9e0f7a8c1c6c8623cf2fe2507b8a91569",
        "1b1a463e05f37709f8a36e5bc71e6c8a38dcb0d2ce7c351e41fa761c76361bfc",
    ),
    (
        RemoteOccurrence(
            OccurrenceKey("c@x", "2026-03-29"),
            datetime(2026, 3, 29, tzinfo=UTC),
            datetime(2026, 3, 30, tzinfo=UTC),
            all_day=True,
            status=Status.CANCELLED,
            description="one\rline\u2028two \x0b",
        ),
        "74793b5079be2488db147fb71b14b5fc64ea036fd19d558a3779cbcaa1572392",
        "aa4f1e1bb4e1a32a5521245d4a14795989b6137d6fc8bccc48779dbf4c9913e8",
    ),
]


def test_hashes_match_those_already_stored() -> None:
    for occurrence, keyed, plain in CASES:
        assert content_hash(occurrence, KEY) == keyed
        assert content_hash(occurrence) == plain


def _normalised(value: str) -> str:
    # The definition of "the same text": line endings and trailing blanks do not count.
    return "\n".join(line.rstrip() for line in value.replace("\r\n", "\n").split("\n")).strip()


texts = st.text(alphabet=st.sampled_from(list("ab \t\r\n\x0b\x0c\u2028\u00a0é")), max_size=12) | st.text(max_size=20)


@given(title=texts, description=texts, location=texts)
def test_texts_that_normalise_alike_hash_alike(title: str, description: str, location: str) -> None:
    def occurrence(t: str, d: str, loc: str) -> RemoteOccurrence:
        return RemoteOccurrence(OccurrenceKey("u@x"), START, START, title=t, description=d, location=loc)

    given_texts = occurrence(title, description, location)
    normalised = occurrence(_normalised(title), _normalised(description), _normalised(location))
    assert content_hash(given_texts, KEY) == content_hash(normalised, KEY)
