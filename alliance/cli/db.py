"""``alliance db ...``: database maintenance."""

from __future__ import annotations

import typer

from alliance.cli.common import console
from alliance.settings import Settings
from core.store import make_engine, pending_migrations, upgrade

app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (they also run automatically on start)."""
    settings = Settings()
    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    was_behind = pending_migrations(engine)
    upgrade(engine)
    engine.dispose()
    console.print("database upgraded" if was_behind else "database already up to date")
