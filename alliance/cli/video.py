"""Video commands: ``alliance connect zoom``, ``alliance video status``, ``alliance video retry SESSION``."""

from __future__ import annotations

import json
import logging

import typer

from alliance.cli.common import CliError, console, open_env
from alliance.video import provider_factory, video_config, zoom_options
from core.video.provider import VideoProviderError
from core.video.service import (
    VideoConnectionInfo,
    connect_video,
    get_video_connection,
    retry_session,
    sweep,
)
from core.video.views import video_links, video_record
from integrations.zoom.factory import make_provider

__all__ = ["connect_zoom", "register"]

log = logging.getLogger(__name__)

video_app = typer.Typer(help="Video links of sessions (Zoom).", no_args_is_help=True)


def connect_zoom(
    account_id: str = typer.Option(..., "--account-id", help="The Zoom account id of the Server-to-Server app."),
    client_id: str = typer.Option(..., "--client-id", help="The app's client id."),
    client_secret: str = typer.Option(
        ..., "--client-secret", help="The app's client secret.", prompt=True, hide_input=True
    ),
    user: str = typer.Option(
        ..., "--user", help="The therapist's Zoom user (id or e-mail): meetings are created for this host."
    ),
) -> None:
    """Connect a practice-wide Zoom Server-to-Server app; online sessions then get Zoom meetings."""
    env = open_env()
    credentials = {"account_id": account_id, "client_id": client_id, "client_secret": client_secret, "user_id": user}
    # Check before storing: a token, then one read of the host's meetings (credentials and user).
    probe = make_provider(
        VideoConnectionInfo(0, env.therapist_id, "zoom", "s2s", credentials),
        lambda _c: None,
        zoom_options(env.settings),
    )
    try:
        next(probe.api.list_meetings(user), None)
    except VideoProviderError as exc:
        raise CliError(f"could not use these Zoom credentials, nothing was stored: {exc.reason}") from None
    connect_video(env.store, env.therapist_id, "zoom", "s2s", credentials)
    outcomes = sweep(env.store, provider_factory(env.settings), video_config(env.settings))
    made = outcomes.get("created", 0) + outcomes.get("recovered", 0)
    console.print(f"connected Zoom; {made} meeting(s) created for upcoming online sessions", highlight=False)


@video_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The Zoom connection: ok, or needs reconnect (and why)."""
    env = open_env()
    view = get_video_connection(env.store, env.therapist_id)
    record = (
        {"provider": view.provider, "kind": view.kind, "health": view.health, "error": view.last_error}
        if view
        else None
    )
    if as_json:
        console.print_json(json.dumps(record))
    elif record is None:
        console.print("no video connection ('alliance connect zoom')", highlight=False)
    else:
        line = f"{record['provider']} ({record['kind']}): {record['health']}"
        console.print(line + (f" - {record['error']}" if record["error"] else ""), highlight=False, markup=False)


@video_app.command("retry")
def retry(
    session_id: int = typer.Argument(..., help="The session's id (id in 'alliance sessions --json')."),
    as_json: bool = typer.Option(False, "--json", help="Print the session's video link as JSON."),
) -> None:
    """Provision the session's video link again now (after "video link missing")."""
    env = open_env()
    try:
        outcome = retry_session(
            env.store, env.therapist_id, session_id, provider_factory(env.settings), video_config(env.settings)
        )
    except LookupError:
        raise CliError(f"no session with id {session_id}") from None
    record = video_record(video_links(env.store, env.therapist_id, [session_id]).get(session_id))
    if as_json:
        console.print_json(json.dumps({"outcome": outcome, "video": record}))
        return
    message = f"session {session_id}: {outcome}; video link {record['link_status']}"
    if record["error"]:
        message += f" ({record['error']})"
    console.print(message, highlight=False, markup=False)
    if record["link_status"] == "missing":
        raise typer.Exit(1)


def register(app: typer.Typer, connect_app: typer.Typer) -> None:
    connect_app.command("zoom")(connect_zoom)
    app.add_typer(video_app, name="video")
