"""``alliance therapists ...`` and ``alliance tokens ...``: accounts and personal API tokens."""

from __future__ import annotations

import typer
from rich.table import Table

from alliance.cli.common import CliError, console
from alliance.keys import open_store
from alliance.settings import Settings
from core.accounts import (
    AccountError,
    create_api_token,
    create_setup_token,
    create_therapist,
    find_therapist,
    list_api_tokens,
    list_therapists,
    revoke_api_token,
    set_password,
)
from core.store import Store

therapists_app = typer.Typer(help="Therapist accounts.", no_args_is_help=True)
tokens_app = typer.Typer(help="Personal API tokens (Authorization: Bearer ...).", no_args_is_help=True)


def _open() -> tuple[Settings, Store]:
    settings = Settings()
    return settings, open_store(settings)


def _setup_link(settings: Settings, store: Store, therapist_id: int) -> str:
    return f"{settings.base_url}/setup-password/{create_setup_token(store, therapist_id)}"


def _prompt_password() -> str:
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@therapists_app.command("add")
def add(
    email: str = typer.Argument(..., help="The therapist's e-mail address (the login name)."),
    name: str = typer.Option("", "--name", help="Display name."),
    timezone: str | None = typer.Option(None, "--timezone", help="IANA zone; defaults to ALLIANCE_TIMEZONE."),
    password: bool = typer.Option(False, "--password", help="Set the password now (prompted, hidden)."),
) -> None:
    """Create a therapist account and print a one-time password-setup link (valid 24 h)."""
    settings, store = _open()
    try:
        try:
            therapist_id = create_therapist(store, email, display_name=name, timezone=timezone or settings.timezone)
            if password:
                set_password(store, therapist_id, _prompt_password())
                console.print(f"therapist {therapist_id} created with a password")
                return
            link = _setup_link(settings, store, therapist_id)
        except AccountError as exc:
            raise CliError(str(exc)) from None
        console.print(f"therapist {therapist_id} created; password setup link (valid 24 h, single use):")
        console.print(link, highlight=False, soft_wrap=True)
    finally:
        store.close()


@therapists_app.command("link")
def link(email: str = typer.Argument(..., help="The therapist's e-mail address.")) -> None:
    """Print a new password-setup link (e.g. after a forgotten password); older links stop working."""
    settings, store = _open()
    try:
        try:
            url = _setup_link(settings, store, find_therapist(store, email))
        except AccountError as exc:
            raise CliError(str(exc)) from None
        console.print("password setup link (valid 24 h, single use):")
        console.print(url, highlight=False, soft_wrap=True)
    finally:
        store.close()


@therapists_app.command("list")
def list_() -> None:
    """List therapist accounts."""
    _, store = _open()
    try:
        table = Table("id", "email", "name", "timezone", "password", box=None)
        for t in list_therapists(store):
            table.add_row(str(t.id), t.email, t.display_name, t.timezone, "set" if t.has_password else "not set")
        console.print(table)
    finally:
        store.close()


@tokens_app.command("create")
def create(
    therapist: str = typer.Option(..., "--therapist", help="E-mail address of the therapist the token acts as."),
    name: str = typer.Option("", "--name", help="What the token is for."),
) -> None:
    """Create a personal API token and print it once (it is stored hashed)."""
    _, store = _open()
    try:
        try:
            new = create_api_token(store, find_therapist(store, therapist), name)
        except AccountError as exc:
            raise CliError(str(exc)) from None
        console.print(f"token {new.id} created; it is shown only now:")
        console.print(new.token, highlight=False, soft_wrap=True)
    finally:
        store.close()


@tokens_app.command("list")
def tokens_list() -> None:
    """List API tokens (id, prefix, therapist, state), never their secrets."""
    _, store = _open()
    try:
        table = Table("id", "prefix", "therapist", "name", "created", "last used", "state", box=None)
        for t in list_api_tokens(store):
            table.add_row(
                str(t.id),
                f"alliance_{t.prefix}…",
                str(t.therapist_id),
                t.name,
                f"{t.created_at:%Y-%m-%d %H:%M}",
                f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never",
                "revoked" if t.revoked_at else "active",
            )
        console.print(table)
    finally:
        store.close()


@tokens_app.command("revoke")
def revoke(token_id: int = typer.Argument(..., help="The token's id (see 'alliance tokens list').")) -> None:
    """Revoke an API token; requests with it get 401 from then on."""
    _, store = _open()
    try:
        if not revoke_api_token(store, token_id):
            raise CliError(f"no API token with id {token_id}")
        console.print(f"token {token_id} revoked")
    finally:
        store.close()


def register(app: typer.Typer) -> None:
    """Add ``alliance therapists`` and ``alliance tokens``."""
    app.add_typer(therapists_app, name="therapists")
    app.add_typer(tokens_app, name="tokens")
