"""The sync-health view of one connection: what ``alliance connections --json`` and
``GET /api/v1/connections/{id}/health`` show an operator or a therapist wondering "is it syncing?".

- last sync: when, and whether it worked (and the last error);
- the failure streak: consecutive failures, since when, and ``backoff_until`` (core.sync.backoff);
- the next scheduled reconciliation (core.jobs.spread: the connection's own slot of the
  interval) and, when a backoff lasts longer, when the next sync can actually run;
- push: the Google channel (core.push) or the Outlook subscription (kept with the connection's
  encrypted settings) and when it expires;
- a push pause: the provider refused to open, renew or stop the channel (rate limit or quota,
  core.push.pause), so channel upkeep waits until a given time; with why and how many refusals in
  a row (the open channel keeps notifying meanwhile and the reconciliation sync keeps the mirror
  current, so it is shown, not counted as needing attention);
- ``needs_attention`` with the reason: K failures in a row, or a grant that must be renewed.

Plain data (JSON-ready), no secrets: a channel's token and a subscription's client state are never
included.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from alliance.reconcile import sync_key
from alliance.settings import Settings
from core.jobs.spread import reconcile_at
from core.mirror import ConnectionView
from core.push import channels_of
from core.push.pause import current_pauses
from core.store import Store
from core.sync.backoff import NEEDS_ATTENTION, NEEDS_RECONNECT

__all__ = ["attention_reason", "connection_health", "next_reconcile_at", "push_pause"]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def next_reconcile_at(connection: ConnectionView, settings: Settings, now: datetime) -> datetime:
    """When the reconciliation sweep next syncs this connection (its slot in the interval)."""
    interval = timedelta(minutes=settings.sync_interval_minutes)
    # A horizon longer than the interval: the next slot is always inside it.
    at = reconcile_at(sync_key(connection.id), connection.last_sync_at, now, interval, interval * 2)
    return at if at is not None else now + interval


def attention_reason(connection: ConnectionView, settings: Settings) -> str | None:
    """Why the connection needs its therapist's attention, or None."""
    if connection.health == NEEDS_RECONNECT:
        return f"the provider no longer accepts the sign-in: connect the calendar again ({connection.last_error})"
    if connection.health == NEEDS_ATTENTION or connection.consecutive_failures >= settings.sync_max_failures:
        return f"{connection.consecutive_failures} failed syncs in a row: {connection.last_error or 'unknown error'}"
    return None


def _push(store: Store, connection: ConnectionView) -> dict[str, Any] | None:
    if connection.provider == "outlook":
        subscription = connection.settings.get("subscription") if connection.settings else None
        if not isinstance(subscription, dict):
            return None
        return {"kind": "outlook_subscription", "expires_at": subscription.get("expires_at")}
    live = [c for c in channels_of(store, connection.id) if c.stopped_at is None]
    if not live:
        return None
    latest = max(live, key=lambda c: c.expires_at)
    return {"kind": f"{latest.provider}_channel", "expires_at": _iso(latest.expires_at)}


def push_pause(store: Store, connection_id: int, now: datetime) -> dict[str, Any] | None:
    """The pause of the connection's channel upkeep in force at ``now`` (None: not paused)."""
    pause = current_pauses(store, now, connection_id).get(connection_id)
    if pause is None:
        return None
    return {"until": _iso(pause.until), "reason": pause.reason, "refusals": pause.failures}


def connection_health(store: Store, settings: Settings, connection: ConnectionView, now: datetime) -> dict[str, Any]:
    """The health view of one connection (``connection`` read with its settings for Outlook)."""
    reconcile = next_reconcile_at(connection, settings, now)
    in_backoff = connection.backoff_until is not None and connection.backoff_until > now
    next_sync = max(reconcile, connection.backoff_until) if in_backoff and connection.backoff_until else reconcile
    reason = attention_reason(connection, settings)
    last_ok: bool | None = None
    if connection.last_sync_at is not None:
        last_ok = connection.last_error is None
    return {
        "id": connection.id,
        "name": connection.name,
        "provider": connection.provider,
        "health": connection.health,
        "last_sync": {"at": _iso(connection.last_sync_at), "ok": last_ok, "error": connection.last_error},
        "last_success_at": _iso(connection.last_success_at),
        "consecutive_failures": connection.consecutive_failures,
        "failing_since": _iso(connection.failing_since),
        "backoff_until": _iso(connection.backoff_until) if in_backoff else None,
        "next_reconcile_at": _iso(reconcile),
        "next_sync_at": _iso(next_sync),
        "push": _push(store, connection),
        "push_pause": push_pause(store, connection.id, now),
        "needs_attention": reason is not None,
        "attention_reason": reason,
    }
