"""``alliance connect google``: sign in with Google (or read a token file), store the grant, first sync.

The sign-in is Google's code flow for installed apps: the authorization address is printed (and
opened in a browser when one is available), Google redirects to a one-shot listener on
127.0.0.1 at a random port, the ``state`` is checked and the code exchanged (PKCE). The grant is
stored encrypted with the connection; a connect whose first sync fails adds nothing.
"""

from __future__ import annotations

import contextlib
import threading
import time
import webbrowser
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import typer

from alliance.cli.common import CliError, err_console, open_env
from alliance.cli.connecting import connect_and_sync
from alliance.providers import provider_options, registry
from integrations.google import oauth
from integrations.google.settings import GoogleOptions, read_authorized_user_file

_DONE_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>Alliance</title>"
    b"<p>Alliance received Google's answer. You can close this tab and return to the terminal.</p>"
)


class _CallbackServer(HTTPServer):
    callback_url: str | None = None


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        if not ({"code", "error", "state"} & set(query)):
            self.send_error(404)  # a browser's /favicon.ico and the like
            return
        host, port = self.server.server_address[:2]
        self.server.callback_url = f"http://{host!s}:{port}{self.path}"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(_DONE_PAGE)))
        self.end_headers()
        self.wfile.write(_DONE_PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the query holds the authorization code: it must not reach the terminal or a log


def _sign_in(options: GoogleOptions, *, open_browser: bool, timeout: float) -> dict[str, Any]:
    server = _CallbackServer(("127.0.0.1", 0), _CallbackHandler)
    server.timeout = 0.5  # handle_request() returns this often to check the deadline
    try:
        redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/"
        request = oauth.begin(options, redirect_uri)
        err_console.print("Sign in with Google to connect your calendar; open this address:", highlight=False)
        err_console.print(request.url, highlight=False, markup=False, soft_wrap=True)
        if open_browser:
            # A browser that fails to open is not an error: the printed address is enough.
            threading.Thread(target=_open_quietly, args=(request.url,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while server.callback_url is None and time.monotonic() < deadline:
            server.handle_request()
        if server.callback_url is None:
            raise CliError(f"no answer from Google's sign-in within {timeout:g} s; nothing was added")
        return oauth.finish(options, request, server.callback_url)
    except oauth.AuthorizationFailed as exc:
        raise CliError(f"{exc}; nothing was added") from None
    finally:
        server.server_close()


def _open_quietly(url: str) -> None:
    with contextlib.suppress(webbrowser.Error):
        webbrowser.open(url)


def connect_google(
    token_file: Path | None = typer.Option(
        None,
        "--token-file",
        help="An authorized-user JSON (refresh_token, client_id, client_secret, optional token) instead of signing in.",
    ),
    calendar: str = typer.Option("primary", "--calendar", help="The calendar's id (default: the primary calendar)."),
    name: str | None = typer.Option(
        None, "--name", help="A name for this calendar (default: google); an existing one is reconnected."
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="Only print the sign-in address."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for the sign-in.", min=1),
) -> None:
    """Connect a Google calendar and run its first sync."""
    env = open_env()
    provider = registry().get("google")
    options = GoogleOptions.from_mapping(provider_options(env.settings)["google"])
    raw = (
        read_authorized_user_file(token_file)
        if token_file
        else _sign_in(options, open_browser=not no_browser, timeout=timeout)
    )
    settings = provider.normalize_settings({**raw, "calendar_id": calendar})
    name = name or ("google" if calendar == "primary" else f"google {calendar}")
    connect_and_sync(env, "google", name, settings)


def register(connect_app: typer.Typer) -> None:
    connect_app.command("google")(connect_google)
