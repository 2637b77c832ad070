"""``GET /api/v1/connections/{id}/health``: the sync-health view of one of your connections.

Last sync (ok or failed, when), the failure streak and backoff, the next scheduled sync, the push
channel or subscription and its expiry, a pause of its upkeep (until when, why), and whether the
connection needs your attention and why (alliance.sync_health). Another therapist's connection is
answered like a missing one (404).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from alliance.sync_health import connection_health
from core.mirror import get_connection
from portal.deps import CurrentTherapist, SettingsDep, StoreDep

__all__ = ["ConnectionHealth", "router"]

router = APIRouter(prefix="/api/v1")

ConnectionId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The connection's id (see the listing).")]


class LastSync(BaseModel):
    at: datetime | None = Field(description="When the last sync ended (null: never synced).")
    ok: bool | None = Field(description="Whether it worked (null: never synced).")
    error: str | None = Field(description="One line about the last failure.")


class PushState(BaseModel):
    kind: str = Field(description="`google_channel` or `outlook_subscription`.")
    expires_at: datetime | None = Field(description="When the provider stops notifying unless renewed.")


class PushPause(BaseModel):
    until: datetime = Field(description="No attempt to open, renew or stop the push channel before this.")
    reason: str = Field(description="Why: the provider's refusal (rate limit or quota), one line.")
    refusals: int = Field(description="Refusals in a row; each one doubles the pause.")


class ConnectionHealth(BaseModel):
    """How syncing one connection is going; never a secret."""

    id: int
    name: str
    provider: str
    health: str = Field(description="`ok`, `error`, `needs_reconnect` or `needs_attention`.")
    last_sync: LastSync
    last_success_at: datetime | None
    consecutive_failures: int = Field(description="Failed syncs in a row since the last success.")
    failing_since: datetime | None = Field(description="When the current failure streak began.")
    backoff_until: datetime | None = Field(description="No sync before this (the provider is throttling or down).")
    next_reconcile_at: datetime = Field(description="The connection's next scheduled reconciliation sync.")
    next_sync_at: datetime = Field(description="When the next scheduled sync can run (after any backoff).")
    push: PushState | None = Field(description="The open push channel or subscription (null: none).")
    push_pause: PushPause | None = Field(
        description="The provider refused channel upkeep (rate limit or quota): paused until when and why "
        "(null: not paused). The open channel keeps notifying and scheduled syncs go on meanwhile."
    )
    needs_attention: bool
    attention_reason: str | None = Field(description="What is wrong and what to do, when it needs attention.")


@router.get(
    "/connections/{connection_id}/health",
    tags=["connections"],
    responses={404: {"description": "No such connection of yours"}},
)
def connection_sync_health(
    connection_id: ConnectionId, store: StoreDep, app_settings: SettingsDep, therapist_id: CurrentTherapist
) -> ConnectionHealth:
    """The sync health of one of your connections."""
    # With settings: an Outlook subscription's expiry is kept with them (never returned).
    view = get_connection(store, therapist_id, connection_id)
    if view is None:
        raise HTTPException(status_code=404, detail="No such connection.")
    return ConnectionHealth.model_validate(connection_health(store, app_settings, view, datetime.now(UTC)))
