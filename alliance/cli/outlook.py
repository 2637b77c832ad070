"""``alliance connect outlook``: sign in with Microsoft (or hand over a refresh token), store the grant, first sync.

The sign-in is MSAL's auth code flow with PKCE for a confidential client: the authorization
address is printed (and opened in a browser when one is available), Microsoft redirects to a
one-shot listener on 127.0.0.1 at a random port (Entra accepts any port for a registered
``http://localhost`` / ``http://127.0.0.1`` redirect URI), and MSAL checks ``state`` and the
nonce and redeems the code. MSAL's token cache is stored, encrypted, with the connection; a
connect whose first sync fails adds nothing (and a reconnect that fails keeps the old grant).
"""

from __future__ import annotations

import contextlib
import threading
import webbrowser
from pathlib import Path
from typing import Any

import typer

from alliance.cli.common import CliError, Env, console, err_console, open_env
from alliance.cli.loopback import LoopbackListener
from alliance.providers import provider_options, registry
from alliance.syncing import sync_one
from core.mirror import (
    ConnectionView,
    add_connection,
    list_connections,
    remove_unsynced_connection,
    update_connection_settings,
)
from core.sync import SourceError, SyncReport
from integrations.base import InvalidSettings
from integrations.outlook import oauth
from integrations.outlook.settings import OutlookOptions

_SUMMARY = ("created", "updated", "rescheduled", "restored", "cancelled", "unchanged")


def _sign_in(options: OutlookOptions, *, open_browser: bool, timeout: float) -> dict[str, Any]:
    with LoopbackListener() as listener:
        request = oauth.begin(options, listener.redirect_uri)
        err_console.print(
            "Sign in with Microsoft to connect your Outlook calendar; open this address:", highlight=False
        )
        err_console.print(request.url, highlight=False, markup=False, soft_wrap=True)
        if open_browser:
            # A browser that fails to open is not an error: the printed address is enough.
            threading.Thread(target=_open_quietly, args=(request.url,), daemon=True).start()
        answer = listener.wait(timeout)
        if answer is None:
            raise CliError(f"no answer from Microsoft's sign-in within {timeout:g} s; nothing was added")
        return oauth.finish(options, request, answer)


def _open_quietly(url: str) -> None:
    with contextlib.suppress(webbrowser.Error):
        webbrowser.open(url)


def _read_refresh_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not token or len(token.split()) != 1:
        raise CliError(f"{path} must contain one refresh token and nothing else")
    return token


def connect_outlook(
    refresh_token_file: Path | None = typer.Option(
        None,
        "--refresh-token-file",
        help="A file holding a refresh token issued to ALLIANCE_MS_CLIENT_ID, instead of signing in.",
    ),
    name: str | None = typer.Option(
        None, "--name", help="A name for this calendar (default: outlook); an existing one is reconnected."
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="Only print the sign-in address."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for the sign-in.", min=1),
) -> None:
    """Connect the primary Outlook / Microsoft 365 calendar and run its first sync."""
    env = open_env()
    provider = registry().get("outlook")
    options = OutlookOptions.from_mapping(provider_options(env.settings)["outlook"])
    try:
        raw = (
            oauth.from_refresh_token(options, _read_refresh_token(refresh_token_file))
            if refresh_token_file
            else _sign_in(options, open_browser=not no_browser, timeout=timeout)
        )
    except (oauth.AuthorizationFailed, InvalidSettings, SourceError) as exc:
        raise CliError(f"{exc}; nothing was added") from None
    settings = provider.normalize_settings(raw)
    name = name or "outlook"
    existing = next((c for c in list_connections(env.store, env.therapist_id) if c.name == name), None)
    if existing is not None and existing.provider == "outlook":
        _reconnect(env, existing, settings)
        return
    try:
        connection_id = add_connection(env.store, env.therapist_id, "outlook", name, settings)
    except ValueError as exc:
        raise CliError(f"{exc}; choose another with --name") from None
    connection = next(c for c in list_connections(env.store, env.therapist_id) if c.id == connection_id)
    outcome = sync_one(env.store, env.settings, connection)
    if not outcome.ok or outcome.report is None:
        remove_unsynced_connection(env.store, connection_id)
        raise CliError(f"could not read {name!r}, nothing was added: {outcome.error}")
    console.print(f"connected {name!r} (id {connection_id})", highlight=False, markup=False)
    _print_summary(name, outcome.report)


def _reconnect(env: Env, connection: ConnectionView, settings: dict[str, Any]) -> None:
    """A new grant for an existing connection: its occurrences, and the sessions on them, stay."""
    update_connection_settings(env.store, connection.id, settings)
    refreshed = next(c for c in list_connections(env.store, env.therapist_id) if c.id == connection.id)
    outcome = sync_one(env.store, env.settings, refreshed)
    if not outcome.ok or outcome.report is None:
        update_connection_settings(env.store, connection.id, connection.settings)  # keep the old grant
        raise CliError(f"could not read {connection.name!r}, nothing was changed: {outcome.error}")
    console.print(f"reconnected {connection.name!r} (id {connection.id})", highlight=False, markup=False)
    _print_summary(connection.name, outcome.report)


def _print_summary(name: str, report: SyncReport) -> None:
    counts = ", ".join(f"{getattr(report, f)} {f}" for f in _SUMMARY)
    console.print(f"{name}: {counts}", highlight=False, markup=False)


def register(connect_app: typer.Typer) -> None:
    connect_app.command("outlook")(connect_outlook)
