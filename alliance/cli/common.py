"""What every command shares: settings, the store, the default therapist, consoles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from rich.console import Console

from alliance.keys import load_master_keys
from alliance.settings import Settings
from core.crypto import Keyring
from core.mirror import ensure_therapist
from core.store import Store

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


class CliError(Exception):
    """A user-facing error; its message is printed as one line."""


@dataclass
class Env:
    settings: Settings
    store: Store
    therapist_id: int
    therapist_timezone: str


def open_env(settings: Settings | None = None) -> Env:
    """Load settings, open (and migrate) the store, and make sure the default therapist exists."""
    settings = settings or Settings()
    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    store = Store.open(settings.effective_database_url, keyring=Keyring(load_master_keys(settings)))
    therapist = ensure_therapist(store, settings.default_therapist_email, timezone=settings.timezone)
    return Env(settings, store, therapist, settings.timezone)


def parse_instant(value: str, option: str) -> datetime:
    """Parse an ISO date or datetime; naive values are taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
        except ValueError:
            raise CliError(f"{option} must be an ISO 8601 date or date-time, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
