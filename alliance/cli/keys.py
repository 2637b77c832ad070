"""``alliance keys ...``: master key generation, rotation and retirement."""

from __future__ import annotations

import typer

from alliance.cli.common import CliError, console
from alliance.keys import load_master_keys, rotate_master_key
from alliance.settings import Settings
from core.crypto import Keyring, MasterKeys, generate_key_text
from core.store import Store

app = typer.Typer(help="Master keys (envelope encryption of secrets and mirrored content).", no_args_is_help=True)


def _open(settings: Settings, keys: MasterKeys) -> Store:
    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    return Store.open(settings.effective_database_url, keyring=Keyring(keys))


def _from_env(settings: Settings) -> bool:
    return settings.master_key is not None and bool(settings.master_key.get_secret_value().strip())


@app.command("generate")
def generate() -> None:
    """Print a new random master key (base64) for ALLIANCE_MASTER_KEY."""
    console.print(generate_key_text(), highlight=False)


@app.command("status")
def status() -> None:
    """Show the active master key version and which versions still wrap data keys."""
    settings = Settings()
    keys = load_master_keys(settings)
    store = _open(settings, keys)
    with store.session() as session:
        in_use = store.keyring.versions_in_use(session)
    console.print(f"active version {keys.active} (fingerprint {keys.fingerprint()}) from {keys.source}")
    for version in sorted(keys.keys):
        console.print(f"  version {version}: wraps {in_use.get(version, 0)} data key(s)")


@app.command("rotate")
def rotate() -> None:
    """Re-wrap every data key under a new master key version; payloads are not touched.

    With a key file, a new version is added to it. With ALLIANCE_MASTER_KEY, put the new key first
    ("2:<new>,1:<old>") and run this; then drop the old one with 'alliance keys retire 1'.
    Run again after a crash: a version written to the key file but never used completes that
    rotation instead of adding another.
    """
    rotation = rotate_master_key(Settings())
    if rotation.resumed:
        console.print(
            f"master key version {rotation.version} was written by an interrupted rotation and wraps no data key "
            "yet: completing that rotation (no new version added)"
        )
    console.print(f"re-wrapped {rotation.moved} data key(s) under master key version {rotation.version}")


@app.command("retire")
def retire(version: int = typer.Argument(..., help="The old master key version to remove.")) -> None:
    """Remove an old master key version once no data key depends on it."""
    settings = Settings()
    keys = load_master_keys(settings)
    store = _open(settings, keys)
    with store.session() as session:
        if version not in keys.keys:
            raise CliError(f"version {version} is not among the loaded master keys")
        if not store.keyring.can_retire(session, version):
            raise CliError(f"version {version} still wraps data keys or is active; run 'alliance keys rotate' first")
    if _from_env(settings):
        console.print(f"version {version} is no longer needed: remove it from ALLIANCE_MASTER_KEY")
        return
    keys.without_version(version).save(settings.master_key_file)
    console.print(f"retired master key version {version}")
