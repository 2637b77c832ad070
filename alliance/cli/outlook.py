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

from alliance.cli.common import CliError, err_console, open_env
from alliance.cli.connecting import connect_and_sync
from alliance.cli.loopback import LoopbackListener
from alliance.providers import provider_options, registry
from core.sync import SourceError
from integrations.base import InvalidSettings
from integrations.outlook import oauth
from integrations.outlook.settings import OutlookOptions


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
    connect_and_sync(env, "outlook", name, settings)


def register(connect_app: typer.Typer) -> None:
    connect_app.command("outlook")(connect_outlook)
