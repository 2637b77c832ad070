"""The video lifecycle: give each online session a meeting, keep it in step, take it away.

Driven by the outbox (occurrence and session events call :func:`reconcile_session`) and by a
periodic :func:`sweep` (sessions entering the rolling window, retries that are due, the day's
deferred work after 00:00 UTC). Every run of one session holds a lease on its row, so two
workers never talk to the provider about the same session at once.

Never two meetings for one session: before a create is sent, a random marker is committed on the
row (``create_sent_at``) and sent with the meeting (Zoom: in the agenda). A run that finds the
marker without a meeting id (the worker died, or the answer was lost) looks the marker up at the
provider before it creates anything.
"""

from __future__ import annotations

import json
import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.clients.models import Modality, TherapySession
from core.crypto import Owner
from core.jobs.policy import RetryPolicy
from core.mirror import read_content
from core.redaction import describe_error
from core.store import OutboxEvent, Store
from core.store.models import Connection, Occurrence, Therapist
from core.sync.types import Status as OccurrenceStatus
from core.video.decide import Action, Have, Status, Want, decide, minutes
from core.video.events import VIDEO_LINK_CHANGED, VIDEO_LINK_MISSING
from core.video.models import HostBudget, SessionVideo, VideoConnection
from core.video.provider import (
    MeetingGone,
    MeetingInProgress,
    MeetingProvider,
    MeetingSpec,
    ProvidedMeeting,
    ProviderNeedsReconnect,
    ProviderRateLimited,
    ProviderRejected,
    VideoProviderError,
)

__all__ = [
    "VIDEO_LINK_CHANGED",
    "VIDEO_LINK_MISSING",
    "ProviderFactory",
    "SessionBusy",
    "VideoConfig",
    "VideoConnectionInfo",
    "next_utc_midnight",
    "reconcile_session",
    "retry_session",
    "sweep",
]

log = logging.getLogger(__name__)


# A meeting Zoom refuses to delete because it is in progress is tried again this much later.
IN_PROGRESS_RETRY = timedelta(minutes=15)

# Neutral: Zoom shows the topic to everyone with the link and in the host's Zoom app.
MEETING_TOPIC = "Appointment"
_PASSCODE_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class VideoConfig:
    window: timedelta = timedelta(days=14)
    daily_budget: int = 100
    max_attempts: int = 6
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    # How long one run may hold a session's row before another worker may take it over.
    lease: timedelta = timedelta(minutes=2)
    # When to look again at a session waiting for a (re)connected video account.
    recheck: timedelta = timedelta(hours=1)


CredentialsStep = Callable[[dict[str, Any]], "dict[str, Any] | None"]
LockedUpdate = Callable[[CredentialsStep], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class VideoConnectionInfo:
    """A video connection with its decrypted credentials, for the provider factory.

    ``locked_update(step)`` runs ``step(stored credentials)`` while holding the connection's lock
    in the database and stores what it returns (see :func:`update_credentials_locked`): how a
    rotating refresh token is used by one worker at a time, across processes.
    """

    id: int
    therapist_id: int
    provider: str
    kind: str
    credentials: dict[str, Any]
    locked_update: LockedUpdate | None = field(default=None, compare=False, repr=False)


SaveCredentials = Callable[[dict[str, Any]], None]
ProviderFactory = Callable[[VideoConnectionInfo, SaveCredentials], MeetingProvider]


class SessionBusy(Exception):
    """An outbox event found its session held by another run: deliver it again later.

    The holder may have read the calendar before this event (a move made while its create was in
    flight) or be dead (its lease runs on): dropping the event would lose the change.
    """


class _LostLease(Exception):
    """Another worker took the session over (our lease ran out): stop without writing."""


def next_utc_midnight(now: datetime) -> datetime:
    day = now.astimezone(UTC).date() + timedelta(days=1)
    return datetime.combine(day, time(0, 0), tzinfo=UTC)


def _join_url_context(session_id: int) -> str:
    return f"session_videos.join_url|{session_id}"


def _credentials_context(connection_id: int) -> str:
    return f"video_connections.credentials|{connection_id}"


# -- connections ---------------------------------------------------------------------------------


def connect_video(store: Store, therapist_id: int, provider: str, kind: str, credentials: dict[str, Any]) -> int:
    """Store (or replace) the therapist's video connection; sessions waiting for it are re-armed."""
    now = datetime.now(UTC)
    with store.session() as session:
        if session.get(Therapist, therapist_id) is None:
            raise LookupError(f"no therapist with id {therapist_id}")
        row = session.scalar(select(VideoConnection).where(VideoConnection.therapist_id == therapist_id))
        if row is None:
            row = VideoConnection(therapist_id=therapist_id, provider=provider, kind=kind, credentials=b"")
            session.add(row)
            session.flush()
        row.provider, row.kind, row.health, row.last_error, row.updated_at = provider, kind, "ok", None, now
        _seal_credentials(store, session, row, credentials)
        # Sessions that were waiting for a connection (or a reconnect) are due now.
        waiting = (
            select(SessionVideo.id)
            .join(TherapySession, TherapySession.id == SessionVideo.session_id)
            .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
            .join(Connection, Connection.id == Occurrence.connection_id)
            .where(Connection.therapist_id == therapist_id, SessionVideo.status == Status.MISSING.value)
            .where(SessionVideo.next_attempt_at.is_not(None))
        )
        session.execute(update(SessionVideo).where(SessionVideo.id.in_(waiting)).values(next_attempt_at=now))
        return row.id


def _seal_credentials(store: Store, session: Session, row: VideoConnection, credentials: dict[str, Any]) -> None:
    cipher = store.keyring.cipher(session, Owner("therapist", row.therapist_id))
    row.credentials = cipher.encrypt(json.dumps(credentials).encode(), _credentials_context(row.id))


def _open_connection(store: Store, session: Session, row: VideoConnection) -> VideoConnectionInfo:
    connection_id = row.id

    def locked_update(step: CredentialsStep) -> dict[str, Any]:
        return update_credentials_locked(store, connection_id, step)

    return VideoConnectionInfo(
        row.id, row.therapist_id, row.provider, row.kind, _read_credentials(store, session, row), locked_update
    )


def _read_credentials(store: Store, session: Session, row: VideoConnection) -> dict[str, Any]:
    plain = store.keyring.decrypt(
        session, Owner("therapist", row.therapist_id), row.credentials, _credentials_context(row.id)
    )
    credentials: dict[str, Any] = json.loads(plain)
    return credentials


def update_credentials_locked(store: Store, connection_id: int, step: CredentialsStep) -> dict[str, Any]:
    """Run ``step(credentials as stored now)`` holding the connection's lock; store and return what it returns.

    ``step`` returning None keeps the stored credentials (and they are returned). The lock is taken
    by a no-op UPDATE of the connection's row before anything is read: on PostgreSQL it is the
    row's lock, on SQLite the database's write lock (busy_timeout makes the second writer wait),
    held until commit. So two workers refreshing a rotating Zoom refresh token at once run one
    after the other, and the second reads the token the first stored instead of spending the old
    one (which Zoom has already invalidated). ``step`` may make the refresh request while the lock
    is held: one HTTP call with a timeout; on SQLite other writers wait for it (busy_timeout).
    """
    with store.session() as session:
        locked = session.execute(
            update(VideoConnection)
            .where(VideoConnection.id == connection_id)
            .values(updated_at=VideoConnection.updated_at)
        )
        if locked.rowcount != 1:  # type: ignore[attr-defined]
            raise LookupError(f"no video connection with id {connection_id}")
        row = session.scalars(
            select(VideoConnection).where(VideoConnection.id == connection_id).execution_options(populate_existing=True)
        ).one()
        current = _read_credentials(store, session, row)
        new = step(current)
        if new is None:
            return current
        _seal_credentials(store, session, row, new)
        row.updated_at = datetime.now(UTC)
        return new


def save_credentials(store: Store, connection_id: int, credentials: dict[str, Any]) -> None:
    """Persist credentials the provider changed itself (a rotated refresh token)."""
    with store.session() as session:
        row = session.get_one(VideoConnection, connection_id)
        _seal_credentials(store, session, row, credentials)
        row.updated_at = datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class VideoConnectionView:
    id: int
    provider: str
    kind: str
    health: str
    last_error: str | None
    updated_at: datetime


def get_video_connection(store: Store, therapist_id: int) -> VideoConnectionView | None:
    """The therapist's video connection (without credentials), or None."""
    with store.session() as session:
        row = session.scalar(select(VideoConnection).where(VideoConnection.therapist_id == therapist_id))
        if row is None:
            return None
        return VideoConnectionView(row.id, row.provider, row.kind, row.health, row.last_error, row.updated_at)


def _mark_needs_reconnect(store: Store, connection_id: int, reason: str) -> None:
    with store.session() as session:
        session.execute(
            update(VideoConnection)
            .where(VideoConnection.id == connection_id)
            .values(health="needs_reconnect", last_error=reason, updated_at=datetime.now(UTC))
        )
    log.warning("video connection needs reconnect (%s)", reason, extra={"video_connection_id": connection_id})


# -- one session ---------------------------------------------------------------------------------


@dataclass
class _Facts:
    session_id: int
    therapist_id: int
    connection_id: int  # the calendar connection (for outbox events)
    occurrence_id: int
    want: Want
    have: Have
    timezone: str
    marker: str | None
    attempts: int
    video_connection: VideoConnectionInfo | None
    health: str | None


def _insert_row(session: Session, session_id: int, now: datetime) -> None:
    dialect = session.get_bind().dialect.name
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(SessionVideo)
    session.execute(
        stmt.on_conflict_do_nothing(index_elements=["session_id"]),
        [{"session_id": session_id, "status": Status.NONE.value, "attempts": 0, "created_at": now, "updated_at": now}],
    )


def _claim(session: Session, session_id: int, now: datetime, lease: datetime) -> bool:
    _insert_row(session, session_id, now)
    result = session.execute(
        update(SessionVideo)
        .where(
            SessionVideo.session_id == session_id,
            or_(SessionVideo.lease_until.is_(None), SessionVideo.lease_until <= now),
        )
        .values(lease_until=lease)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _write(
    store: Store,
    session_id: int,
    lease: datetime,
    release: bool = False,
    announce: OutboxEvent | None = None,
    **values: Any,
) -> None:
    """Update our row, only while we still hold its lease (and add ``announce`` in the same transaction)."""
    if release:
        values["lease_until"] = None
    values.setdefault("updated_at", datetime.now(UTC))
    with store.session() as session:
        result = session.execute(
            update(SessionVideo)
            .where(SessionVideo.session_id == session_id, SessionVideo.lease_until == lease)
            .values(**values)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise _LostLease()
        if announce is not None:
            session.add(announce)


def _load(store: Store, session: Session, session_id: int) -> _Facts | None:
    found = session.execute(
        select(TherapySession, Occurrence, Connection.therapist_id, Connection.removed_at)
        .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
        .join(Connection, Connection.id == Occurrence.connection_id)
        .where(TherapySession.id == session_id)
    ).first()
    if found is None:
        return None
    ts, occ, therapist_id, removed_at = found
    row = session.scalar(select(SessionVideo).where(SessionVideo.session_id == session_id))
    if row is None:  # pragma: no cover - claimed (and so inserted) before loading
        return None
    url = read_content(store, session, occ).video_url
    # Our own meeting's link written back into the event is not an "external" link.
    external = url if url and not (row.meeting_id and f"/j/{row.meeting_id}" in url) else None
    vc_row = session.scalar(select(VideoConnection).where(VideoConnection.therapist_id == therapist_id))
    vc = _open_connection(store, session, vc_row) if vc_row is not None else None
    tz = occ.timezone or session.scalar(select(Therapist.timezone).where(Therapist.id == therapist_id)) or "UTC"
    have_external = None
    if row.provider == "external" and row.join_url is not None:
        have_external = store.keyring.decrypt(
            session, Owner("therapist", therapist_id), row.join_url, _join_url_context(session_id)
        ).decode()
    return _Facts(
        session_id=session_id,
        therapist_id=therapist_id,
        connection_id=occ.connection_id,
        occurrence_id=occ.id,
        want=Want(
            online=ts.modality == Modality.ONLINE.value,
            # A removed calendar no longer tells us where the session is: its meeting would
            # drift from the calendar unseen, so it goes as for a cancellation (a calendar
            # connected again relinks the session, which then gets a meeting again).
            cancelled=occ.status == OccurrenceStatus.CANCELLED.value or removed_at is not None,
            start=occ.start_utc,
            end=occ.end_utc,
            external_url=external,
        ),
        have=Have(
            status=Status(row.status),
            provider=row.provider,
            meeting_id=row.meeting_id,
            meeting_start=row.meeting_start,
            meeting_minutes=row.meeting_minutes,
            create_sent=row.create_sent_at is not None,
            held=row.status == Status.MISSING.value and row.next_attempt_at is None,
            has_connection=vc is not None and (vc_row is not None and vc_row.health == "ok"),
            external_url=have_external,
        ),
        timezone=tz,
        marker=row.marker,
        attempts=row.attempts,
        video_connection=vc,
        health=vc_row.health if vc_row is not None else None,
    )


def _take_budget(store: Store, connection_id: int, now: datetime, budget: int) -> bool:
    """Count one create/update against the host's budget of today (UTC); False if it is spent."""
    day: date = now.astimezone(UTC).date()
    with store.session() as session:
        take = (
            update(HostBudget)
            .where(HostBudget.connection_id == connection_id, HostBudget.day == day, HostBudget.used < budget)
            .values(used=HostBudget.used + 1)
        )
        if session.execute(take).rowcount == 1:  # type: ignore[attr-defined]
            return True
        # No row for today yet, or the budget is spent. Create the row if it is missing (a
        # concurrent worker may be creating it too: ON CONFLICT waits for its commit), then
        # try again. Deciding "spent" from a separate read would race with that worker: its
        # freshly committed row would read as an existing one and the budget as used up.
        dialect = session.get_bind().dialect.name
        stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(HostBudget)
        session.execute(
            stmt.on_conflict_do_nothing(index_elements=["connection_id", "day"]),
            [{"connection_id": connection_id, "day": day, "used": 0}],
        )
        return bool(session.execute(take).rowcount == 1)  # type: ignore[attr-defined]


def _spend_budget(store: Store, connection_id: int, now: datetime, budget: int) -> None:
    """The provider says the host's daily limit is reached (other apps count too): stop for today."""
    day = now.astimezone(UTC).date()
    with store.session() as session:
        session.execute(
            update(HostBudget)
            .where(HostBudget.connection_id == connection_id, HostBudget.day == day)
            .values(used=budget)
        )


def _passcode() -> str:
    return "".join(secrets.choice(_PASSCODE_ALPHABET) for _ in range(8))


class _Run:
    """One reconcile of one session under a lease."""

    def __init__(
        self, store: Store, facts: _Facts, factory: ProviderFactory, config: VideoConfig, now: datetime, lease: datetime
    ) -> None:
        self.store, self.f, self.factory, self.config, self.now, self.lease = store, facts, factory, config, now, lease
        self._provider: MeetingProvider | None = None
        self.released = False  # our lease is given back (with the run's last write)

    @property
    def provider(self) -> MeetingProvider:
        if self._provider is None:
            vc = self.f.video_connection
            if vc is None:
                raise ProviderNeedsReconnect("no video connection")
            self._provider = self.factory(vc, lambda creds: save_credentials(self.store, vc.id, creds))
        return self._provider

    def write(self, release: bool = False, announce: bool = False, **values: Any) -> None:
        event = _event(self.f, VIDEO_LINK_CHANGED, {"session_id": self.f.session_id}) if announce else None
        _write(self.store, self.f.session_id, self.lease, release=release, announce=event, **values)
        self.released = self.released or release

    def seal(self, url: str) -> bytes:
        with self.store.session() as session:
            cipher = self.store.keyring.cipher(session, Owner("therapist", self.f.therapist_id))
            return cipher.encrypt_text(url, _join_url_context(self.f.session_id))

    # -- outcomes ----------------------------------------------------------------------------
    def done(self, meeting: ProvidedMeeting) -> None:
        self.write(
            release=True,
            announce=True,  # the link goes onto the calendar event (write-back)
            provider="zoom",
            status=Status.ACTIVE.value,
            reason=None,
            meeting_id=meeting.meeting_id,
            join_url=self.seal(meeting.join_url),
            meeting_start=meeting.start or self.f.want.start,
            meeting_minutes=minutes(self.f.want),
            attempts=0,
            next_attempt_at=None,
        )

    def cleared(self, **extra: Any) -> None:
        values: dict[str, Any] = dict(
            provider=None,
            status=Status.NONE.value,
            reason=None,
            meeting_id=None,
            join_url=None,
            meeting_start=None,
            meeting_minutes=None,
            marker=None,
            create_sent_at=None,
            attempts=0,
            next_attempt_at=None,
        )
        values.update(extra)
        # Our meeting's link leaves the calendar event with the meeting.
        self.write(release=True, announce=self.f.have.provider == "zoom", **values)

    def deferred(self, until: datetime, reason: str) -> str:
        self.write(release=True, status=Status.DEFERRED.value, reason=reason, next_attempt_at=until)
        if until >= self.f.want.start and self.f.have.status is not Status.DEFERRED:
            # The budget comes back only after the session has begun: tell the therapist now.
            _emit_missing(self.store, self.f, "budget")
        return "deferred"

    # -- actions -------------------------------------------------------------------------------
    def create(self, marker: str | None) -> str:
        vc = self.f.video_connection
        if vc is None:  # pragma: no cover - decide() says NO_CONNECTION first
            return self.no_connection()
        if not _take_budget(self.store, vc.id, self.now, self.config.daily_budget):
            return self.deferred(next_utc_midnight(self.now), "daily Zoom create/update budget of the host is spent")
        marker = marker or secrets.token_hex(16)
        # Committed BEFORE the request: if we die after sending it, the next run finds the marker.
        # The session is also due again when our lease ends, so the sweep finishes it if we die:
        # a create started by the sweep itself has no outbox delivery that would come back.
        self.write(
            marker=marker,
            create_sent_at=self.now,
            provider="zoom",
            status=Status.PENDING.value,
            next_attempt_at=self.lease,
        )
        spec = MeetingSpec(
            topic=MEETING_TOPIC,
            start=self.f.want.start,
            duration_minutes=minutes(self.f.want),
            timezone=self.f.timezone,
            marker=marker,
            passcode=_passcode(),
        )
        self.done(self.provider.create(spec))
        return "created"

    def recover(self) -> str:
        marker = self.f.marker
        found = self.provider.find(marker) if marker else None
        if found is None:
            return self.create(marker)
        want_minutes = minutes(self.f.want)
        if (found.start is None or found.start == self.f.want.start) and (
            found.duration_minutes is None or found.duration_minutes == want_minutes
        ):
            self.done(found)
            return "recovered"
        return self.adopt_moved(found)

    def adopt_moved(self, found: ProvidedMeeting) -> str:
        """The session moved while its create was in doubt: the meeting still has the old time.

        The move's own delivery found no meeting id to patch (or gave way to our lease), and
        nothing else would come back to it, so the patch is made here, as any move (budget
        included). The meeting is recorded first as Zoom has it, due again when our lease ends:
        if the patch fails or we die before it, the next run moves it like any other meeting.
        """
        start = found.start or self.f.want.start
        length = found.duration_minutes or minutes(self.f.want)
        self.write(
            announce=True,  # the link goes onto the calendar event (write-back)
            provider="zoom",
            status=Status.ACTIVE.value,
            reason=None,
            meeting_id=found.meeting_id,
            join_url=self.seal(found.join_url),
            meeting_start=start,
            meeting_minutes=length,
            next_attempt_at=self.lease,
        )
        self.f.have = replace(
            self.f.have,
            status=Status.ACTIVE,
            provider="zoom",
            meeting_id=found.meeting_id,
            meeting_start=start,
            meeting_minutes=length,
        )
        outcome = self.move()
        return "recovered" if outcome == "moved" else outcome

    def move(self) -> str:
        vc = self.f.video_connection
        meeting_id = self.f.have.meeting_id
        if vc is None or meeting_id is None:  # pragma: no cover - decide() only moves our meetings
            return "nothing"
        if not _take_budget(self.store, vc.id, self.now, self.config.daily_budget):
            return self.deferred(next_utc_midnight(self.now), "daily Zoom create/update budget of the host is spent")
        try:
            self.provider.reschedule(meeting_id, self.f.want.start, minutes(self.f.want), self.f.timezone)
        except MeetingGone:
            return self.gone_outside()
        self.write(
            release=True,
            status=Status.ACTIVE.value,
            reason=None,
            meeting_start=self.f.want.start,
            meeting_minutes=minutes(self.f.want),
            attempts=0,
            next_attempt_at=None,
        )
        return "moved"

    def delete(self) -> str:
        meeting_id = self.f.have.meeting_id
        if meeting_id is None and self.f.marker is not None:
            found = self.provider.find(self.f.marker)
            meeting_id = found.meeting_id if found else None
        if meeting_id is not None:
            try:
                self.provider.delete(meeting_id)
            except MeetingGone:
                pass  # already gone: the goal is reached
            except MeetingInProgress:
                # Zoom refuses to delete a meeting that is running (someone is in it): the
                # call is not cut; the delete is tried again later (a session that is over by
                # then keeps its meeting, as every past session does).
                self.write(
                    release=True,
                    reason="the Zoom meeting is in progress; it is deleted once it has ended",
                    next_attempt_at=self.now + IN_PROGRESS_RETRY,
                )
                return "in_progress"
        if self.f.want.external_url is not None and self.f.want.online and not self.f.want.cancelled:
            return self.use_external()
        self.cleared()
        return "deleted"

    def use_external(self) -> str:
        url = self.f.want.external_url
        if url is None:  # pragma: no cover
            return "nothing"
        self.cleared(provider="external", status=Status.ACTIVE.value, join_url=self.seal(url))
        return "external"

    def no_connection(self) -> str:
        reconnect = self.f.health == "needs_reconnect"
        reason = (
            "the Zoom connection needs reconnecting ('alliance connect zoom')"
            if reconnect
            else "no Zoom connection ('alliance connect zoom')"
        )
        self.write(
            release=True, status=Status.MISSING.value, reason=reason, next_attempt_at=self.now + self.config.recheck
        )
        if self.f.have.status is not Status.MISSING:
            # Told once, when the link goes missing, not at every hourly recheck.
            _emit_missing(self.store, self.f, "needs_reconnect" if reconnect else "no_connection")
        return "no_connection"

    def gone_outside(self) -> str:
        """Our meeting no longer exists at Zoom (deleted there): keep it visible, do not re-create."""
        self.write(
            release=True,
            announce=True,
            status=Status.MISSING.value,
            reason="the Zoom meeting was deleted outside Alliance ('alliance video retry' makes a new one)",
            meeting_id=None,
            join_url=None,
            marker=None,
            create_sent_at=None,
            next_attempt_at=None,
        )
        _emit_missing(self.store, self.f, "deleted_outside")
        return "missing"

    # -- failures ------------------------------------------------------------------------------
    def failed(self, exc: VideoProviderError) -> str:
        vc = self.f.video_connection
        if isinstance(exc, ProviderRateLimited) and exc.daily:
            if vc is not None:
                _spend_budget(self.store, vc.id, self.now, self.config.daily_budget)
            return self.deferred(exc.retry_at or next_utc_midnight(self.now), exc.reason)
        if isinstance(exc, ProviderNeedsReconnect):
            if vc is not None:
                _mark_needs_reconnect(self.store, vc.id, exc.reason)
            if self.f.have.status is Status.ACTIVE:
                # Keep the last good link until the therapist reconnects.
                self.write(release=True, reason=exc.reason, next_attempt_at=self.now + self.config.recheck)
                return "needs_reconnect"
            self.write(
                release=True,
                status=Status.MISSING.value,
                reason=f"Zoom needs reconnecting: {exc.reason}",
                next_attempt_at=self.now + self.config.recheck,
            )
            _emit_missing(self.store, self.f, "needs_reconnect")
            return "needs_reconnect"
        attempts = self.f.attempts + 1
        if isinstance(exc, ProviderRejected) or attempts >= self.config.max_attempts:
            keep_active = self.f.have.status is Status.ACTIVE
            self.write(
                release=True,
                status=Status.ACTIVE.value if keep_active else Status.MISSING.value,
                reason=f"gave up after {attempts} attempt(s): {exc.reason}",
                attempts=attempts,
                next_attempt_at=None,
            )
            if not keep_active:
                _emit_missing(self.store, self.f, "gave_up")
                log.warning("video link missing: %s", exc.reason, extra={"session_id": self.f.session_id})
            return "gave_up"
        delay = self.config.policy.backoff(attempts)
        retry_at = self.now + delay
        if isinstance(exc, ProviderRateLimited) and exc.retry_at is not None:
            retry_at = max(retry_at, exc.retry_at)
        self.write(
            release=True,
            status=Status.ACTIVE.value if self.f.have.status is Status.ACTIVE else Status.PENDING.value,
            reason=f"retrying: {exc.reason}",
            attempts=attempts,
            next_attempt_at=retry_at,
        )
        return "retry"

    def run(self, action: Action) -> str:
        try:
            if action is Action.CREATE:
                return self.create(None)
            if action is Action.RECOVER:
                return self.recover()
            if action is Action.MOVE:
                return self.move()
            if action is Action.DELETE:
                return self.delete()
            if action is Action.USE_EXTERNAL:
                return self.use_external()
            if action is Action.NO_CONNECTION:
                return self.no_connection()
            if action is Action.LATER:
                self.write(release=True, status=Status.LATER.value, reason=None, next_attempt_at=None)
                return "later"
            if action is Action.CLEAR:
                self.cleared()
                return "cleared"
            self.write(release=True)
            return "nothing"
        except VideoProviderError as exc:
            return self.failed(exc)


def _event(f: _Facts, kind: str, payload: dict[str, Any]) -> OutboxEvent:
    return OutboxEvent(
        kind=kind,
        therapist_id=f.therapist_id,
        connection_id=f.connection_id,
        occurrence_id=f.occurrence_id,
        payload=payload,
    )


def _emit_missing(store: Store, f: _Facts, code: str) -> None:
    with store.session() as session:
        session.add(_event(f, VIDEO_LINK_MISSING, {"session_id": f.session_id, "reason": code}))


def reconcile_session(
    store: Store, session_id: int, factory: ProviderFactory, config: VideoConfig, now: datetime | None = None
) -> str:
    """Bring one session's video link in line with its calendar event; returns what happened."""
    now = now or datetime.now(UTC)
    lease = now + config.lease
    claimed = False
    run: _Run | None = None
    try:
        # The lease is taken in the transaction that reads the facts (one transaction less): if
        # reading fails, the claim is rolled back with it.
        with store.session() as session:
            claimed = _claim(session, session_id, now, lease)
            facts = _load(store, session, session_id) if claimed else None
        if not claimed:
            return "busy"
        if facts is None:
            return "unknown"
        action = decide(facts.want, facts.have, now, config.window)
        run = _Run(store, facts, factory, config, now, lease)
        return run.run(action)
    except _LostLease:
        log.warning("video provisioning lost its lease; another worker continues", extra={"session_id": session_id})
        return "lost"
    finally:
        # Whatever happened (an unexpected error included), do not keep the row locked. A run
        # whose last write released it costs no further transaction.
        if claimed and (run is None or not run.released):
            with store.session() as session:
                session.execute(
                    update(SessionVideo)
                    .where(SessionVideo.session_id == session_id, SessionVideo.lease_until == lease)
                    .values(lease_until=None)
                )


def retry_session(
    store: Store,
    therapist_id: int,
    session_id: int,
    factory: ProviderFactory,
    config: VideoConfig,
    now: datetime | None = None,
) -> str:
    """The therapist's "try again": lifts a held "missing" and reconciles now."""
    with store.session() as session:
        owner = session.scalar(
            select(Connection.therapist_id)
            .join(Occurrence, Occurrence.connection_id == Connection.id)
            .join(TherapySession, TherapySession.occurrence_id == Occurrence.id)
            .where(TherapySession.id == session_id)
        )
        if owner != therapist_id:
            raise LookupError(f"no session with id {session_id}")
        session.execute(
            update(SessionVideo)
            .where(SessionVideo.session_id == session_id)
            .values(attempts=0, next_attempt_at=now or datetime.now(UTC), status=Status.PENDING.value)
            .where(SessionVideo.status.in_([Status.MISSING.value, Status.DEFERRED.value, Status.PENDING.value]))
        )
    return reconcile_session(store, session_id, factory, config, now)


# Built once: every occurrence event of every sync asks it (most occurrences have no session).
_SESSIONS_OF_OCCURRENCE = select(TherapySession.id).where(TherapySession.occurrence_id == bindparam("occurrence_id"))


def sessions_of_occurrence(store: Store, occurrence_id: int, session: Session | None = None) -> list[int]:
    """The occurrence's sessions, read through ``session`` when given (an outbox delivery's)."""
    return [
        row[0] for row in store.read_rows(_SESSIONS_OF_OCCURRENCE, {"occurrence_id": occurrence_id}, through=session)
    ]


def due_sessions(store: Store, config: VideoConfig, now: datetime, limit: int = 200) -> list[int]:
    """Sessions the sweep should look at: retries and deferrals that are due, and online sessions
    inside the window that have no link yet."""
    horizon = now + config.window
    with store.session() as session:
        due = select(SessionVideo.session_id).where(
            SessionVideo.next_attempt_at <= now,
            or_(SessionVideo.lease_until.is_(None), SessionVideo.lease_until <= now),
        )
        entering = (
            select(TherapySession.id)
            .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
            .join(Connection, Connection.id == Occurrence.connection_id)
            .outerjoin(SessionVideo, SessionVideo.session_id == TherapySession.id)
            .where(
                TherapySession.modality == Modality.ONLINE.value,
                Occurrence.status != OccurrenceStatus.CANCELLED.value,
                Connection.removed_at.is_(None),
                Occurrence.end_utc > now,
                Occurrence.start_utc <= horizon,
                or_(
                    SessionVideo.id.is_(None),
                    and_(SessionVideo.status.in_([Status.LATER.value, Status.NONE.value])),
                ),
            )
            .order_by(Occurrence.start_utc)
        )
        # Meetings of sessions whose calendar was removed (they go, see _load).
        orphaned = (
            select(SessionVideo.session_id)
            .join(TherapySession, TherapySession.id == SessionVideo.session_id)
            .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
            .join(Connection, Connection.id == Occurrence.connection_id)
            .where(
                Connection.removed_at.is_not(None),
                SessionVideo.provider == "zoom",
                or_(SessionVideo.meeting_id.is_not(None), SessionVideo.create_sent_at.is_not(None)),
                Occurrence.end_utc > now,
                or_(SessionVideo.lease_until.is_(None), SessionVideo.lease_until <= now),
            )
        )
        ids = list(session.scalars(due.limit(limit)))
        ids += [i for i in session.scalars(orphaned.limit(limit)) if i not in ids]
        ids += [i for i in session.scalars(entering.limit(limit)) if i not in ids]
        return ids[:limit]


def sweep(
    store: Store, factory: ProviderFactory, config: VideoConfig, now: datetime | None = None, limit: int = 200
) -> dict[str, int]:
    """Reconcile every due session (periodic job); returns a count per outcome."""
    now = now or datetime.now(UTC)
    outcomes: dict[str, int] = {}
    for session_id in due_sessions(store, config, now, limit):
        try:
            outcome = reconcile_session(store, session_id, factory, config, now)
        except Exception as exc:  # one broken session must not stop the sweep
            outcome = "error"
            log.warning("video reconcile failed (%s)", describe_error(exc), extra={"session_id": session_id})
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def handle_event(
    store: Store,
    occurrence_id: int | None,
    payload: dict[str, Any],
    factory: ProviderFactory,
    config: VideoConfig,
    now: datetime | None = None,
    *,
    session: Session | None = None,
) -> dict[int, str]:
    """Outbox consumer for occurrence and session events: reconcile the session(s) concerned.

    Idempotent (reconcile compares the calendar with what we have). Provider failures are
    recorded on the session's row and retried by the sweep, so they never fail the delivery.
    ``session`` (the delivery's) only reads which sessions an occurrence has: every reconcile
    writes in transactions of its own, around the provider's calls.
    """
    session_id = payload.get("session_id")
    ids = [session_id] if isinstance(session_id, int) else []
    if not ids and occurrence_id is not None:
        ids = sessions_of_occurrence(store, occurrence_id, session)
    return {sid: reconcile_session(store, sid, factory, config, now) for sid in ids}
