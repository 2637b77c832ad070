"""``alliance links ...`` (client links of sessions) and ``alliance measures ...`` (licensed rating text)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from alliance.cli.common import CliError, console, open_env
from core.links import (
    LinkError,
    get_checkin,
    get_contact_line,
    issue_link,
    join_clicks,
    link_url,
    live_tokens,
    revoke_link,
    set_contact_line,
)
from core.ratings import MeasureFileError, licensed_measure, load_licensed_measure, remove_licensed_measure

links_app = typer.Typer(help="Client links of sessions (one per session; nothing identifying in it).")
measures_app = typer.Typer(help="The rating form's wording: our own, or the licensed SRS text a practice loads.")


@links_app.command("issue")
def issue(session_id: int = typer.Argument(..., help="The session id ('alliance sessions --json').")) -> None:
    """Print the session's client link, issuing one if it has none (or it was revoked)."""
    env = open_env()
    try:
        token = issue_link(env.store, env.therapist_id, session_id)
    except LinkError as exc:
        raise CliError(str(exc)) from None
    console.print(link_url(env.settings.base_url, token), highlight=False, soft_wrap=True)


@links_app.command("revoke")
def revoke(session_id: int = typer.Argument(..., help="The session id.")) -> None:
    """Revoke the session's client link: it shows the same 'not found' page as a mistyped one."""
    env = open_env()
    try:
        revoked = revoke_link(env.store, env.therapist_id, session_id)
    except LinkError as exc:
        raise CliError(str(exc)) from None
    console.print(f"session {session_id}: link revoked" if revoked else f"session {session_id} had no live link")


@links_app.command("show")
def show(
    session_id: int = typer.Argument(..., help="The session id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The session's link, the client's check-in (location, callback number, checklist) and Join presses."""
    env = open_env()
    try:
        tokens = live_tokens(env.store, env.therapist_id, [session_id])
        checkin = get_checkin(env.store, env.therapist_id, session_id)
        clicks = join_clicks(env.store, env.therapist_id, session_id)
    except LinkError as exc:
        raise CliError(str(exc)) from None
    token = tokens.get(session_id)
    record = {
        "session": session_id,
        "client_url": link_url(env.settings.base_url, token) if token else None,
        "checkin": None
        if checkin is None
        else {
            "checked": list(checkin.checked),
            "location": checkin.location,
            "callback": checkin.callback,
            "updated_at": checkin.updated_at.isoformat(),
        },
        "join_clicks": [c.isoformat() for c in clicks],
    }
    if as_json:
        console.print_json(json.dumps(record))
        return
    for key, value in record.items():
        console.print(f"{key}: {value}", highlight=False, markup=False, soft_wrap=True)


@links_app.command("contact")
def contact(
    line: str | None = typer.Argument(None, help="e.g. 'Questions? Call 030 1234 567'. Omit to print the current one."),
    clear: bool = typer.Option(False, "--clear", help="Remove the contact line."),
) -> None:
    """The line a client sees on the page of a cancelled session."""
    env = open_env()
    if clear or line is not None:
        try:
            set_contact_line(env.store, env.therapist_id, None if clear else line)
        except LinkError as exc:
            raise CliError(str(exc)) from None
    current = get_contact_line(env.store, env.therapist_id)
    console.print(current or "(no contact line)", highlight=False, markup=False, soft_wrap=True)


@measures_app.command("load")
def load(
    file: Path = typer.Argument(..., help="TOML (or .json) with name, copyright and locales.<lang>.<item>."),
    attest_license: bool = typer.Option(
        False, "--attest-license", help="Confirm that this practice holds a licence for the instrument."
    ),
) -> None:
    """Load the licensed item text (e.g. the official SRS); only then is the form called by its name."""
    env = open_env()
    try:
        name = load_licensed_measure(env.store, file, attest_license=attest_license)
    except MeasureFileError as exc:
        raise CliError(str(exc)) from None
    console.print(f"loaded {name}; the rating form now uses it", highlight=False, markup=False)


@measures_app.command("show")
def show_measure() -> None:
    """Which wording the rating form uses."""
    env = open_env()
    measure = licensed_measure(env.store)
    if measure is None:
        console.print("built-in wording (alliance4); no licensed text loaded")
        return
    console.print(
        f"{measure.name} ({', '.join(sorted(measure.locales))}), attested {measure.attested_at.isoformat()}",
        highlight=False,
        markup=False,
    )


@measures_app.command("remove")
def remove_measure() -> None:
    """Forget the licensed text; the form goes back to the built-in wording."""
    env = open_env()
    console.print("removed" if remove_licensed_measure(env.store) else "no licensed text was loaded")


def register(app: typer.Typer) -> None:
    app.add_typer(links_app, name="links")
    app.add_typer(measures_app, name="measures")
