"""``POST /webhooks/google``: Google Calendar push pings (reference/providers.md 1.5, 4b).

A ping has no body; everything is in ``X-Goog-*`` headers. It only says "something changed in
the watched calendar", so the answer is one incremental sync of the connection, requested through
``core.jobs.coalesce`` (a burst of pings, or pings during a running sync, become one follow-up
run) and run by the worker, never here: the endpoint answers within milliseconds.

- ``sync`` (the first message of a new channel, which may arrive before ``events.watch`` even
  returned): acknowledged, nothing to sync.
- ``exists`` / ``not_exists``: the channel id, its token and the resource id must match a channel
  we opened (``core.push.verify_ping``); then a sync is requested and 200 returned. Ping-started
  syncs of a calendar begin ``ALLIANCE_PUSH_SYNC_SPACING_MS`` apart (off by default): a ping after a
  quiet spell syncs at once, the pings of a burst (quick successive edits, a series edit touching
  many events) within that spacing of the last sync join one run due then: one events.list.
- A re-delivery (its ``X-Goog-Message-Number`` no higher than one already acted on for the channel,
  ``core.push.pings``) is acknowledged with 200 and syncs nothing.
- Anything unverified: 403, logged with the channel id only (never the token), nothing synced.
  Google does not retry a 403 (only 5xx), so a forged or stale ping costs one request.

Pings that arrive together are acted on together (``webhooks.batch.GroupCommit``): one
transaction and one worker thread per batch, not per ping; one query reads the channels of the
batch, one claim per channel takes its highest message number, and the syncs of the batch's
connections are requested together. Each ping still gets its own answer (a forged one among genuine ones is refused),
and only after the batch committed, so a 200 still means "acted on". Should the batch fail, the group
commit acts on each of its pings again in a transaction of its own, so one that cannot be acted on
fails alone: it gets a 500 and nothing of it stays (its message number included), Google retries
it, and the retry is acted on. Under a storm of pings this took each ping's transaction,
statements and thread hop down to a share of one (benchmarks/README.md, session 14).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.types import ASGIApp, Receive, Scope, Send

from alliance.jobs import build_registry
from alliance.reconcile import SyncWanted, request_syncs_in
from alliance.settings import Settings
from core.jobs import JobRegistry
from core.push.pings import NumberedPing, accept_pings_in, parse_message_number
from core.push.service import PingCredentials
from core.store import Store
from webhooks.asgi import PostAheadOfRoutes, answer_empty, header, read_body
from webhooks.batch import GroupCommit

__all__ = ["PATH", "GoogleWebhook"]

log = logging.getLogger(__name__)

PATH = "/webhooks/google"
PROVIDER = "google"
_CHANGE_STATES = frozenset({"exists", "not_exists"})


@dataclass(frozen=True, slots=True)
class _Ping:
    """One ``exists`` / ``not_exists`` (or unknown-state) message, as its headers say."""

    channel_id: str
    token: str | None
    resource_id: str | None
    state: str
    number: int | None
    received_at: datetime


class _Verdict(enum.Enum):
    REFUSED = "refused"  # 403: not a channel of ours, or the wrong token or resource
    IGNORED = "ignored"  # genuine, a resource state that asks for nothing
    REPLAY = "replay"  # genuine, a message number already acted on
    SYNC = "sync"  # genuine: the connection's sync is requested


@dataclass(frozen=True, slots=True)
class _Outcome:
    verdict: _Verdict
    connection_id: int | None = None
    delay: timedelta = timedelta(0)
    queued: bool = False  # a new sync run (False: a waiting one absorbed the request)


class _PingBatches:
    """Acts on the pings that arrive together in one transaction (one per app, made on first use)."""

    def __init__(self, store: Store, settings: Settings, registry: JobRegistry) -> None:
        self.store = store
        self.registry = registry
        self.spacing = timedelta(milliseconds=settings.push_sync_spacing_ms)
        self.group: GroupCommit[_Ping] = GroupCommit(self._act)

    def _act(self, pings: Sequence[_Ping]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        # Per connection: the sync of its first genuine ping in the batch (delay, backoff).
        wanted: dict[int, SyncWanted] = {}
        with self.store.session() as session:
            accepted_pings = accept_pings_in(
                session,
                self.store,
                PROVIDER,
                [
                    NumberedPing(PingCredentials(p.channel_id, p.token, p.resource_id, p.received_at), p.number)
                    for p in pings
                ],
            )
            for ping, accepted in zip(pings, accepted_pings, strict=True):
                if accepted is None:
                    outcomes.append(_Outcome(_Verdict.REFUSED))
                elif ping.state not in _CHANGE_STATES:
                    outcomes.append(_Outcome(_Verdict.IGNORED))
                elif accepted.replay:
                    outcomes.append(_Outcome(_Verdict.REPLAY))
                else:
                    connection_id = accepted.connection_id
                    if connection_id not in wanted:
                        delay = accepted.sync_delay(ping.received_at, self.spacing)
                        wanted[connection_id] = SyncWanted(
                            connection_id, ping.received_at, delay, accepted.backoff_until
                        )
                    outcomes.append(_Outcome(_Verdict.SYNC, connection_id))
            # In connection order: two web processes' batches touch the queue's rows in one order.
            asked = [wanted[c] for c in sorted(wanted)]
            queued = dict(zip(sorted(wanted), request_syncs_in(session, self.registry, asked), strict=True))
        return [
            _Outcome(o.verdict, o.connection_id, wanted[o.connection_id].delay, queued[o.connection_id])
            if o.connection_id is not None
            else o
            for o in outcomes
        ]


class GoogleWebhook(PostAheadOfRoutes):
    """Answers ``POST /webhooks/google`` ahead of the routing table (``webhooks.asgi``); every
    other request goes on to ``app``. A ping has no parameters, body or dependencies to resolve."""

    path = PATH

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self._batches: _PingBatches | None = None

    async def handle_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        await read_body(receive)  # Google sends none; whatever came is read so the connection is reusable
        await answer_empty(send, await self._answer(scope))

    async def _answer(self, scope: Scope) -> int:
        """Act on one Google push message (headers only); the status to answer with."""
        channel_id = header(scope, b"x-goog-channel-id") or ""
        state = header(scope, b"x-goog-resource-state") or ""
        if state == "sync":
            log.info("Google push channel %s confirmed", channel_id[:64])
            return 200
        number = parse_message_number(header(scope, b"x-goog-message-number"))
        ping = _Ping(
            channel_id,
            header(scope, b"x-goog-channel-token"),
            header(scope, b"x-goog-resource-id"),
            state,
            number,
            datetime.now(UTC),
        )
        app_state = scope["app"].state
        outcome: _Outcome = await self._batches_for(app_state.store, app_state.settings).group.submit(ping)
        if outcome.verdict is _Verdict.REFUSED:
            log.warning("Google push ping refused: unknown channel %r, or wrong token or resource", channel_id[:64])
            return 403
        if outcome.verdict is _Verdict.IGNORED:
            log.info("Google push ping with resource state %r ignored", state[:32])
            return 200
        if outcome.verdict is _Verdict.REPLAY:
            log.debug("Google push message %s of channel %s delivered again: no sync", number, channel_id[:64])
            return 200
        worker = getattr(app_state, "worker", None)
        if worker is not None:  # the embedded worker; procrastinate's insert NOTIFY wakes its own
            worker.wake(after=outcome.delay.total_seconds())
        log.debug(
            "Google push ping for connection %s (%s)",
            outcome.connection_id,
            "queued" if outcome.queued else "coalesced",
        )
        return 200

    def _batches_for(self, store: Store, settings: Settings) -> _PingBatches:
        # One per app (this middleware is built once per app); the registry names the jobs a ping
        # may request (cheap to build, not free).
        if self._batches is None:
            self._batches = _PingBatches(store, settings, build_registry(settings))
        return self._batches
