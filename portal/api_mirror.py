"""JSON API of the mirror (``/api/v1``): calendar connections, syncing them, their occurrences.

Every query is scoped to the signed-in therapist: another therapist's connection or occurrence
is answered exactly like one that does not exist (404).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from alliance.providers import registry
from alliance.syncing import sync_one
from core.clients import session_for_occurrence
from core.mirror import (
    ConnectionNameTaken,
    ConnectionView,
    HistoryEntry,
    ListingVersion,
    OccurrenceView,
    add_connection,
    get_connection,
    get_occurrence,
    list_connections,
    occurrence_history,
    occurrence_listing,
    occurrence_record,
    read_listing_version,
    remove_connection,
    rename_connection,
)
from core.store import Store
from integrations.base import InvalidSettings
from integrations.ics.public_only import PrivateAddress, UnresolvableHost, check_public_host
from portal.deps import CurrentTherapist, SettingsDep, StoreDep
from portal.listing_cache import ListingCache
from portal.params import field_error, window
from portal.schemas import (
    ConnectionCreate,
    ConnectionPublic,
    ConnectionUpdate,
    HistoryEntryPublic,
    OccurrenceDetail,
    OccurrencePublic,
    OccurrenceQuery,
    SyncCounts,
    SyncResult,
)

__all__ = ["connection_public", "occurrence_public", "router"]

router = APIRouter(prefix="/api/v1")

ConnectionId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The connection's id (see the listing).")]
OccurrenceId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The occurrence's id (see the listing).")]

# A therapist on the web may only point the server at remote feeds. A file path would let anyone
# with an account make the server read its own files (the master key file, for one): files stay
# the operator's, through ``alliance connect ics PATH``.
_REMOTE_SCHEMES = frozenset({"http", "https", "webcal", "webcals"})
_DEFAULT_WINDOW_DAYS = 30

_NO_CONNECTION = {"description": "No such connection of yours"}
_NO_OCCURRENCE = {"description": "No such occurrence of yours"}


def connection_public(view: ConnectionView) -> ConnectionPublic:
    """The public shape of a connection (never its settings)."""
    if view.occurrences is None:  # only a sync reads a connection without its count
        raise ValueError(f"connection {view.id} was read without its occurrence count")
    return ConnectionPublic(
        id=view.id,
        name=view.name,
        provider=view.provider,
        health=view.health,
        last_error=view.last_error,
        last_sync_at=view.last_sync_at,
        last_success_at=view.last_success_at,
        last_result=SyncCounts.model_validate(view.last_result) if view.last_result else None,
        occurrences=view.occurrences,
    )


def occurrence_public(o: OccurrenceView) -> dict[str, Any]:
    """One occurrence as ``alliance events --json`` prints it, plus ``connection_id``.

    A plain dict (validated by the route's response model once), not a model built here and
    validated again: listings are the hot path (benchmarks/api_occurrences.py).
    """
    return {**occurrence_record(o), "connection_id": o.connection_id}


def _history_public(h: HistoryEntry) -> HistoryEntryPublic:
    return HistoryEntryPublic(
        kind=h.kind, at=h.at, old_start=h.old_start, old_end=h.old_end, new_start=h.new_start, new_end=h.new_end
    )


def _feed_settings(source: str, *, public_only: bool) -> dict[str, Any]:
    """The provider's clean settings for a remote feed; a 422 naming ``source`` otherwise.

    ``public_only``: the feed may only ever be fetched from public internet addresses
    (integrations.ics.public_only); one that already resolves to a private or local address is
    refused now, so the therapist learns it at once rather than at the first sync.
    """
    # Fixed messages: an error never repeats the address, whose path may be the feed's secret.
    try:
        scheme = urlsplit(source).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in _REMOTE_SCHEMES:
        raise field_error("body", "source", "must be an https://, http:// or webcal:// feed address")
    try:
        clean = registry().get("ics").normalize_settings({"source": source, "public_only": public_only})
    except InvalidSettings:
        raise field_error("body", "source", "is not a usable feed address (check the host name and port)") from None
    if public_only:
        parts = urlsplit(clean["source"])
        try:
            check_public_host(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        except PrivateAddress:
            raise field_error("body", "source", "must be on the public internet, not a local address") from None
        except UnresolvableHost:
            pass  # a name that does not resolve yet is the sync's to report, like any unreachable feed
    return clean


def _default_name(source: str) -> str:
    # The host only: the path and query of a secret feed URL are the secret.
    return (urlsplit(source).hostname or "ics feed")[:200]


def _name_taken() -> HTTPException:
    return HTTPException(status_code=409, detail="You already have a connection with that name; choose another.")


@router.get("/connections", tags=["connections"])
def connections(store: StoreDep, therapist_id: CurrentTherapist) -> list[ConnectionPublic]:
    """Your calendar connections with their health and last sync, oldest first."""
    return [connection_public(c) for c in list_connections(store, therapist_id, with_settings=False)]


@router.post(
    "/connections",
    status_code=201,
    tags=["connections"],
    responses={409: {"description": "A connection with that name exists"}},
)
def create_connection(
    body: ConnectionCreate, store: StoreDep, app_settings: SettingsDep, therapist_id: CurrentTherapist
) -> ConnectionPublic:
    """Add an ICS feed. It is not fetched now: the periodic sync picks it up, or ``POST .../sync``."""
    settings = _feed_settings(body.source, public_only=not app_settings.allow_private_feeds)
    name = body.name or _default_name(settings["source"])
    try:
        connection_id = add_connection(store, therapist_id, body.provider, name, settings)
    except ConnectionNameTaken:
        raise _name_taken() from None
    view = get_connection(store, therapist_id, connection_id, with_settings=False)
    if view is None:  # removed between the two calls by a concurrent DELETE
        raise HTTPException(status_code=404, detail="No such connection.")
    return connection_public(view)


@router.get("/connections/{connection_id}", tags=["connections"], responses={404: _NO_CONNECTION})
def connection(connection_id: ConnectionId, store: StoreDep, therapist_id: CurrentTherapist) -> ConnectionPublic:
    """One of your connections."""
    view = get_connection(store, therapist_id, connection_id, with_settings=False)
    if view is None:
        raise HTTPException(status_code=404, detail="No such connection.")
    return connection_public(view)


@router.patch(
    "/connections/{connection_id}",
    tags=["connections"],
    responses={404: _NO_CONNECTION, 409: {"description": "A connection with that name exists"}},
)
def update_connection(
    connection_id: ConnectionId, body: ConnectionUpdate, store: StoreDep, therapist_id: CurrentTherapist
) -> ConnectionPublic:
    """Rename one of your connections."""
    if body.name is not None:
        try:
            found = rename_connection(store, therapist_id, connection_id, body.name)
        except ConnectionNameTaken:
            raise _name_taken() from None
        if not found:
            raise HTTPException(status_code=404, detail="No such connection.")
    return connection(connection_id, store, therapist_id)


@router.delete("/connections/{connection_id}", status_code=204, tags=["connections"], responses={404: _NO_CONNECTION})
def delete_connection(connection_id: ConnectionId, store: StoreDep, therapist_id: CurrentTherapist) -> Response:
    """Remove one of your connections: it stops syncing, and it and its occurrences leave every listing.

    Nothing mirrored is deleted: sessions made from its occurrences stay (with their last known
    times), as does their history. The feed address is forgotten at once. A second DELETE is a 404.
    """
    if not remove_connection(store, therapist_id, connection_id):
        raise HTTPException(status_code=404, detail="No such connection.")
    return Response(status_code=204)


@router.post(
    "/connections/{connection_id}/sync",
    tags=["connections"],
    responses={
        404: _NO_CONNECTION,
        409: {"description": "A sync of this connection is already running"},
        502: {"description": "The calendar source could not be read; `detail` says why, on one line"},
    },
)
def sync_connection_now(
    connection_id: ConnectionId, store: StoreDep, settings: SettingsDep, therapist_id: CurrentTherapist
) -> SyncResult:
    """Sync one of your connections now and return what changed.

    A plain ``def`` route: FastAPI runs it in its thread pool, so a slow feed never blocks the
    event loop. The outcome is recorded on the connection as the periodic sync's would be.
    """
    view = get_connection(store, therapist_id, connection_id)
    if view is None:
        raise HTTPException(status_code=404, detail="No such connection.")
    outcome = sync_one(store, settings, view)
    if outcome.failure == "busy":
        raise HTTPException(status_code=409, detail="A sync of this connection is already running; try again later.")
    if outcome.failure == "gone":
        raise HTTPException(status_code=404, detail="No such connection.")
    if outcome.report is None:
        # The engine's one line (the source named by scheme and host only, integrations.ics.settings).
        raise HTTPException(status_code=502, detail=outcome.error or "The calendar source could not be read.")
    counts = SyncCounts.model_validate(outcome.report.as_dict())
    return SyncResult(connection_id=connection_id, **counts.model_dump())


_OCCURRENCE_LIST: TypeAdapter[list[OccurrencePublic]] = TypeAdapter(list[OccurrencePublic])


@router.get("/occurrences", tags=["occurrences"], response_model=list[OccurrencePublic])
async def occurrences(
    query: Annotated[OccurrenceQuery, Query()], request: Request, therapist_id: CurrentTherapist
) -> Response:
    """Your occurrences overlapping ``[from, to)``, by start, with their titles."""
    store: Store = request.app.state.store  # not StoreDep: one dependency less on the hot path
    first, last = window(query.start, query.end, default_days=_DEFAULT_WINDOW_DAYS)
    cache: ListingCache[ListingVersion] = request.app.state.listing_cache
    key = (therapist_id, first, last, query.include_cancelled)
    cached = cache.get(key)
    if cached is not None and store.reads_are_local:
        # A calendar app polls far more often than the calendar changes: an unchanged listing is
        # one indexed read of the embedded file, cheaper on the event loop than the thread-pool
        # hop around it (benchmarks/api_occurrences.py). A database server is always asked from
        # the pool, where a slow answer cannot stall every other request. The loop never waits
        # for a connection either: without one free at once, the read goes to the thread pool.
        with store.reader_nowait() as connection:
            if connection is not None and read_listing_version(connection, therapist_id) == cached.version:
                return Response(content=cached.body, media_type="application/json")
    body = await run_in_threadpool(_listing_body, store, cache, therapist_id, key, first, last, query.include_cancelled)
    return Response(content=body, media_type="application/json")


def _listing_body(
    store: Store,
    cache: ListingCache[ListingVersion],
    therapist_id: int,
    key: tuple[Any, ...],
    first: datetime | None,
    last: datetime | None,
    include_cancelled: bool,
) -> bytes:
    """The encoded listing, reused from ``cache`` while its version holds (runs in the thread pool)."""
    cached = cache.get(key)
    version, views = occurrence_listing(
        store,
        therapist_id,
        start=first,
        end=last,
        include_cancelled=include_cancelled,
        unchanged_since=cached.version if cached is not None else None,
    )
    if views is None and cached is not None:
        return cached.body
    # Validated and encoded in one pass by pydantic-core (the body is what the schema says).
    body = _OCCURRENCE_LIST.dump_json(_OCCURRENCE_LIST.validate_python([occurrence_public(o) for o in views or []]))
    cache.put(key, version, body)
    return body


@router.get("/occurrences/{occurrence_id}", tags=["occurrences"], responses={404: _NO_OCCURRENCE})
def occurrence(occurrence_id: OccurrenceId, store: StoreDep, therapist_id: CurrentTherapist) -> OccurrenceDetail:
    """One of your occurrences (cancelled ones too) with its history and its session, if any."""
    view = get_occurrence(store, therapist_id, occurrence_id)
    if view is None:
        raise HTTPException(status_code=404, detail="No such occurrence.")
    session = session_for_occurrence(store, therapist_id, occurrence_id)
    return OccurrenceDetail(
        **occurrence_public(view),
        session_id=session.id if session else None,
        history=[_history_public(h) for h in occurrence_history(store, occurrence_id)],
    )
