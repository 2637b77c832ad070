"""Run syncs of stored connections through their provider plugins."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from alliance.providers import context_for, provider_for
from alliance.settings import Settings
from alliance.sync_backoff import note_failure
from core.mirror import ConnectionView, list_connections, therapist_timezone, update_connection_settings
from core.store import Store
from core.sync import ConnectionGone, ReauthorizationRequired, SourceError, SyncInProgress, SyncReport, sync_connection
from integrations.base import InvalidSettings, ProviderError

log = logging.getLogger(__name__)

ProgressFactory = Callable[[ConnectionView], Callable[[int, int | None], None] | None]

# Why a sync did not run to the end, for callers that answer differently (the API: 502 / 409 / 404):
# "source": the calendar could not be read or used (recorded on the connection as its health);
# "busy": another sync of the same connection holds it; "gone": the connection was removed.
Failure = Literal["source", "busy", "gone"]


@dataclass(frozen=True)
class SyncOutcome:
    connection: ConnectionView
    report: SyncReport | None
    error: str | None
    failure: Failure | None = None
    # After a failure: no sync before this (a retryable failure's backoff, core.sync.backoff).
    backoff_until: datetime | None = None
    # The failure was the grant itself (revoked or expired for good): only a new sign-in helps.
    grant_refused: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def sync_one(
    store: Store,
    settings: Settings,
    connection: ConnectionView,
    *,
    force_empty: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
    clock: Callable[[], datetime] | None = None,
    timezone: str | None = None,
) -> SyncOutcome:
    """Sync one connection; provider and source failures become the outcome's error.

    A failure is also counted on the connection and may set its backoff (alliance.sync_backoff),
    reckoned from the moment of the failure by ``clock`` (the job's; the current time by default).
    ``timezone``: the therapist's, when the caller read it already (saves a transaction).
    """
    zone = timezone if timezone is not None else therapist_timezone(store, connection.therapist_id)
    context = context_for(settings, zone)

    def save_settings(new_settings: dict[str, Any]) -> None:
        update_connection_settings(store, connection.id, new_settings)

    try:
        provider = provider_for(connection, context, save_settings=save_settings, store=store)
        report = sync_connection(store, connection.id, provider, force_empty=force_empty, progress=progress)
    except SyncInProgress as exc:
        log.info("sync of connection %s skipped: %s", connection.id, exc)
        return SyncOutcome(connection, None, str(exc), "busy")
    except ConnectionGone:
        # Removed between listing and syncing (the API's DELETE while the periodic job runs).
        log.info("sync of connection %s skipped: it was removed", connection.id)
        return SyncOutcome(connection, None, "the connection was removed", "gone")
    except (SourceError, InvalidSettings, ProviderError) as exc:
        log.info("sync of connection %s failed: %s", connection.id, exc)
        record = note_failure(store, settings, connection.id, exc, clock() if clock else datetime.now(UTC))
        backoff_until = record.backoff_until if record is not None else None
        refused = isinstance(exc, ReauthorizationRequired)
        return SyncOutcome(connection, None, str(exc), "source", backoff_until, grant_refused=refused)
    return SyncOutcome(connection, report, None)


def sync_all(
    store: Store,
    settings: Settings,
    therapist_id: int | None = None,
    *,
    only: str | None = None,
    force_empty: bool = False,
    progress_factory: ProgressFactory | None = None,
) -> list[SyncOutcome]:
    """Sync every connection (or the one named ``only``), each independently of the others.

    Removed connections are not synced (``list_connections`` leaves them out).
    """
    connections = list_connections(store, therapist_id)
    if only is not None:
        connections = [c for c in connections if only in (c.name, str(c.id))]
        if not connections:
            raise LookupError(f"no connection named {only!r}")
    return [
        sync_one(
            store,
            settings,
            c,
            force_empty=force_empty,
            progress=progress_factory(c) if progress_factory else None,
        )
        for c in connections
    ]
