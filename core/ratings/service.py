"""Alliance ratings and the real end of a call.

A rating is four items on 0-10 with one decimal (the visual-analogue lines of the SRS format, in
our own wording unless a practice loaded the licensed text); the total is computed here, never
taken from the client. One rating per session: the first one stands.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.clients.models import Client, TherapySession
from core.crypto import KeyDestroyed, Owner
from core.links.policy import CallTimes
from core.ratings.models import Rating, RatingDecline, SessionEnd
from core.store.db import Store

log = logging.getLogger(__name__)

ITEMS = ("bond", "goals", "approach", "overall")
"""The four items, in the order the form shows them."""

BUILTIN_MEASURE = "alliance4"
LICENSED_MEASURE = "srs"
COMMENT_LIMIT = 2000
# Digits only, at most one decimal: "7", "7.5", "10.0". Not "7.55", "1e1", "-0", " 7" or "nan".
_SCORE = re.compile(r"^(?:10(?:\.0)?|[0-9](?:\.[0-9])?)$")


class InvalidRating(ValueError):
    """A score outside 0-10 or with more than one decimal; ``field`` names the item."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class RatingRecord:
    """One rating as plain data (what the alert rules and the therapist's views read)."""

    session_id: int
    client_id: int
    measure: str
    submitted_at: datetime
    bond: float
    goals: float
    approach: float
    overall: float
    total: float
    # The encrypted comment as stored; :func:`read_comment` decrypts it for the therapist.
    comment_sealed: bytes | None


def parse_score(field: str, value: str | None) -> Decimal:
    """A score from a form: 0 to 10, at most one decimal; ``InvalidRating`` naming ``field`` otherwise."""
    if field not in ITEMS:
        raise InvalidRating(field, f"unknown item {field!r}")
    text = (value or "").strip()
    if not text:
        raise InvalidRating(field, f"{field} is missing")
    if not _SCORE.match(text):
        raise InvalidRating(field, f"{field} must be a number from 0 to 10 with at most one decimal")
    return Decimal(text)


def _comment_context(session_id: int, client_id: int) -> str:
    return f"ratings.comment|{session_id}|{client_id}"


def _record(row: Rating) -> RatingRecord:
    return RatingRecord(
        session_id=row.session_id,
        client_id=row.client_id,
        measure=row.measure,
        submitted_at=row.submitted_at,
        bond=row.bond,
        goals=row.goals,
        approach=row.approach,
        overall=row.overall,
        total=row.total,
        comment_sealed=row.comment,
    )


def submit_rating(
    store: Store,
    session_id: int,
    client_id: int,
    scores: dict[str, str | None],
    comment: str | None = None,
    *,
    measure: str = BUILTIN_MEASURE,
    now: datetime | None = None,
) -> tuple[RatingRecord, bool]:
    """Store a rating; returns (the session's rating, whether this call created it).

    Every score is validated before anything is written (``InvalidRating`` names the first bad item).
    A second submission changes nothing: the first stands and is returned with ``False``.
    """
    parsed = {item: parse_score(item, scores.get(item)) for item in ITEMS}
    text = (comment or "").strip()
    if len(text) > COMMENT_LIMIT:
        raise InvalidRating("comment", f"comment is longer than {COMMENT_LIMIT} characters")
    total = sum(parsed.values(), Decimal(0))
    at = now or datetime.now(UTC)
    try:
        with store.session() as session:
            existing = session.scalar(select(Rating).where(Rating.session_id == session_id))
            if existing is not None:
                return _record(existing), False
            _require_session_of(session, session_id, client_id)
            sealed = None
            if text:
                cipher = store.keyring.cipher(
                    session, Owner("client", client_id), parent=_therapist_of(session, client_id)
                )
                sealed = cipher.encrypt_text(text, _comment_context(session_id, client_id))
            row = Rating(
                session_id=session_id,
                client_id=client_id,
                measure=measure,
                submitted_at=at,
                bond=float(parsed["bond"]),
                goals=float(parsed["goals"]),
                approach=float(parsed["approach"]),
                overall=float(parsed["overall"]),
                total=float(total),
                comment=sealed,
            )
            session.add(row)
            session.flush()
            log.info("session %d: rating received", session_id)
            return _record(row), True
    except IntegrityError:
        # Two submissions at once: the other one won the unique session_id; it stands.
        found = get_rating(store, session_id)
        if found is None:  # pragma: no cover - the unique violation means a row exists
            raise
        return found, False


def _require_session_of(session: Session, session_id: int, client_id: int) -> None:
    row = session.get(TherapySession, session_id)
    if row is None or row.client_id != client_id:
        raise LookupError(f"session {session_id} is not this client's")


def _therapist_of(session: Session, client_id: int) -> Owner:
    therapist_id = session.scalar(select(Client.therapist_id).where(Client.id == client_id))
    if therapist_id is None:
        raise LookupError(f"no client with id {client_id}")
    return Owner("therapist", therapist_id)


def get_rating(store: Store, session_id: int) -> RatingRecord | None:
    """The session's rating, if one was submitted."""
    with store.session() as session:
        row = session.scalar(select(Rating).where(Rating.session_id == session_id))
        return _record(row) if row is not None else None


def list_client_ratings(store: Store, therapist_id: int, client_id: int) -> list[RatingRecord]:
    """Every rating of one of this therapist's clients, oldest first (empty for another's client)."""
    with store.session() as session:
        rows = session.scalars(
            select(Rating)
            .join(Client, Client.id == Rating.client_id)
            .where(Rating.client_id == client_id, Client.therapist_id == therapist_id)
            .order_by(Rating.submitted_at, Rating.id)
        ).all()
        return [_record(r) for r in rows]


def read_comment(store: Store, record: RatingRecord) -> str | None:
    """The decrypted comment of a rating (None without one, or when the client's key was destroyed)."""
    if record.comment_sealed is None:
        return None
    with store.session() as session:
        try:
            return store.keyring.decrypt(
                session,
                Owner("client", record.client_id),
                record.comment_sealed,
                _comment_context(record.session_id, record.client_id),
            ).decode()
        except KeyDestroyed:
            return None


def decline_rating(store: Store, session_id: int, client_id: int, *, now: datetime | None = None) -> bool:
    """Record that the client would rather not rate this session (alert rule R6); False when it was
    already declined or rated (nothing changes then)."""
    at = now or datetime.now(UTC)
    try:
        with store.session() as session:
            _require_session_of(session, session_id, client_id)
            if session.scalar(select(Rating.id).where(Rating.session_id == session_id)) is not None:
                return False
            if session.get(RatingDecline, session_id) is not None:
                return False
            session.add(RatingDecline(session_id=session_id, client_id=client_id, declined_at=at))
            session.flush()
    except IntegrityError:
        return False  # declined twice at once: the other one stands
    log.info("session %d: rating declined", session_id)
    return True


def declined_sessions(store: Store, client_id: int) -> set[int]:
    """Ids of the client's sessions whose rating the client declined (callers scope the client)."""
    with store.session() as session:
        return set(session.scalars(select(RatingDecline.session_id).where(RatingDecline.client_id == client_id)))


# -- the real end of a call ---------------------------------------------------------------------


def record_session_end(
    store: Store,
    session_id: int,
    *,
    ended_at: datetime | None,
    started_at: datetime | None = None,
    no_show: bool = False,
    now: datetime | None = None,
) -> None:
    """Record what the video platform said about a session's call (the latest report wins).

    Call it from a ``session.ended`` handler (e.g. Zoom's ``meeting.ended``); the rating then
    opens at ``ended_at`` instead of the scheduled end plus a delay, and is not offered for a
    no-show or a call shorter than the configured minimum. Idempotent.
    """
    for value in (ended_at, started_at):
        if value is not None and value.tzinfo is None:
            raise ValueError("call times must be timezone-aware")
    with store.session() as session:
        if session.get(TherapySession, session_id) is None:
            raise LookupError(f"no session with id {session_id}")
        row = session.get(SessionEnd, session_id)
        if row is None:
            row = SessionEnd(session_id=session_id)
            session.add(row)
        row.started_at = started_at
        row.ended_at = ended_at
        row.no_show = no_show
        row.recorded_at = now or datetime.now(UTC)
    log.info("session %d: call end recorded (no_show=%s)", session_id, no_show)


def no_show_sessions(store: Store, therapist_id: int, client_id: int) -> set[int]:
    """Ids of this therapist's client's sessions the video platform reported as no-shows (alert rule R7)."""
    with store.session() as session:
        rows = session.scalars(
            select(SessionEnd.session_id)
            .join(TherapySession, TherapySession.id == SessionEnd.session_id)
            .join(Client, Client.id == TherapySession.client_id)
            .where(
                SessionEnd.no_show.is_(True),
                TherapySession.client_id == client_id,
                Client.therapist_id == therapist_id,
            )
        )
        return set(rows)


def call_times(session: Session, session_id: int) -> CallTimes | None:
    """The recorded call of a session, inside the caller's transaction."""
    row = session.get(SessionEnd, session_id)
    if row is None:
        return None
    return CallTimes(started_at=row.started_at, ended_at=row.ended_at, no_show=row.no_show)


__all__ = [
    "BUILTIN_MEASURE",
    "COMMENT_LIMIT",
    "ITEMS",
    "LICENSED_MEASURE",
    "InvalidRating",
    "RatingRecord",
    "call_times",
    "decline_rating",
    "declined_sessions",
    "get_rating",
    "list_client_ratings",
    "no_show_sessions",
    "parse_score",
    "read_comment",
    "record_session_end",
    "submit_rating",
]
