"""Connect (or reconnect) a therapist's calendar from the browser, and sync it once: shared by the
``/connect/<provider>`` pages. A connect that cannot sync adds nothing; a reconnect that cannot
sync keeps the old grant."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi.responses import Response

from alliance.settings import Settings
from alliance.syncing import sync_one
from core.mirror import (
    ConnectionNameTaken,
    add_connection,
    get_connection,
    list_connections,
    remove_unsynced_connection,
    update_connection_settings,
)
from core.store import Store

__all__ = ["allow_form_action", "connect_calendar"]

# The app's policy (portal.middleware) with one change: see allow_form_action.
_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self' {origin}; base-uri 'none'"


def allow_form_action(response: Response, sign_in_url: str) -> Response:
    """Let the page's connect form lead to the provider's sign-in.

    Browsers apply CSP ``form-action`` to every redirect a form submission follows, so the app-wide
    ``form-action 'self'`` stops the POST's 303 to Microsoft's (or Google's) sign-in: the button
    would do nothing. The page's own policy adds exactly that origin.
    """
    parts = urlsplit(sign_in_url)
    response.headers["content-security-policy"] = _CSP.format(origin=f"{parts.scheme}://{parts.netloc}")
    return response


def connect_calendar(
    store: Store, settings: Settings, therapist_id: int, provider: str, name: str, provider_settings: dict[str, Any]
) -> str | None:
    """Add (or reconnect) the therapist's ``provider`` connection called ``name`` and sync it once.

    Returns one line saying what went wrong, or None.
    """
    existing = next(
        (c for c in list_connections(store, therapist_id) if c.name == name and c.provider == provider), None
    )
    if existing is not None:
        update_connection_settings(store, existing.id, provider_settings)
        refreshed = get_connection(store, therapist_id, existing.id)
        outcome = sync_one(store, settings, refreshed) if refreshed is not None else None
        if outcome is None or not outcome.ok:
            update_connection_settings(store, existing.id, existing.settings)  # keep the old grant
            return f"Could not read the calendar; nothing was changed ({outcome.error if outcome else 'removed'})."
        return None
    try:
        connection_id = add_connection(store, therapist_id, provider, name, provider_settings)
    except ConnectionNameTaken:
        return f"A calendar named '{name}' of another kind exists; rename it first."
    view = get_connection(store, therapist_id, connection_id)
    outcome = sync_one(store, settings, view) if view is not None else None
    if outcome is None or not outcome.ok:
        remove_unsynced_connection(store, connection_id)
        return f"Could not read the calendar; nothing was added ({outcome.error if outcome else 'removed'})."
    return None
