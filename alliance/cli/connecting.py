"""The last step of every ``alliance connect <provider>``: store the grant, sync once, report.

A name the therapist already uses for a connection of the same provider is a reconnect: the
connection keeps its id, occurrences and the sessions on them; a first sync that fails leaves
everything as it was (nothing added, the old grant kept).
"""

from __future__ import annotations

from typing import Any

from alliance.cli.common import CliError, Env, console
from alliance.syncing import SyncOutcome, sync_one
from core.mirror import (
    ConnectionView,
    add_connection,
    list_connections,
    remove_unsynced_connection,
    update_connection_settings,
)
from core.sync import SyncReport

__all__ = ["connect_and_sync"]

_SUMMARY = ("created", "updated", "rescheduled", "restored", "cancelled", "unchanged")


def connect_and_sync(env: Env, provider: str, name: str, settings: dict[str, Any]) -> None:
    """Add (or reconnect) ``name`` with clean provider ``settings`` and run its first sync."""
    existing = next((c for c in list_connections(env.store, env.therapist_id) if c.name == name), None)
    if existing is not None and existing.provider == provider:
        _reconnect(env, existing, settings)
        return
    try:
        connection_id = add_connection(env.store, env.therapist_id, provider, name, settings)
    except ValueError as exc:
        raise CliError(f"{exc}; choose another with --name") from None
    connection = next(c for c in list_connections(env.store, env.therapist_id) if c.id == connection_id)
    outcome = sync_one(env.store, env.settings, connection)
    if not outcome.ok or outcome.report is None:
        remove_unsynced_connection(env.store, connection_id)
        raise CliError(f"could not read {name!r}, nothing was added: {_failure(provider, outcome)}")
    console.print(f"connected {name!r} (id {connection_id})", highlight=False, markup=False)
    _print_summary(name, outcome.report)


def _reconnect(env: Env, connection: ConnectionView, settings: dict[str, Any]) -> None:
    """A new grant for an existing connection: its occurrences, and the sessions on them, stay."""
    update_connection_settings(env.store, connection.id, settings)
    refreshed = next(c for c in list_connections(env.store, env.therapist_id) if c.id == connection.id)
    outcome = sync_one(env.store, env.settings, refreshed)
    if not outcome.ok or outcome.report is None:
        update_connection_settings(env.store, connection.id, connection.settings)  # keep the old grant
        raise CliError(
            f"could not read {connection.name!r}, nothing was changed: {_failure(connection.provider, outcome)}"
        )
    console.print(f"reconnected {connection.name!r} (id {connection.id})", highlight=False, markup=False)
    _print_summary(connection.name, outcome.report)


def _failure(provider: str, outcome: SyncOutcome) -> str:
    """Why the first sync failed. A refused grant's own message says "connect again", which is
    what was just done: say instead that the grant given is the problem."""
    if outcome.grant_refused:
        return (
            f"{provider} refused the grant given (revoked or expired): sign in again with "
            f"'alliance connect {provider}', or give a file with a newly issued grant"
        )
    return str(outcome.error)


def _print_summary(name: str, report: SyncReport) -> None:
    counts = ", ".join(f"{getattr(report, f)} {f}" for f in _SUMMARY)
    console.print(f"{name}: {counts}", highlight=False, markup=False)
