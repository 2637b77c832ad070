"""Where the running service gets its master keys from."""

from __future__ import annotations

from dataclasses import dataclass

from alliance.settings import Settings
from core.crypto import Keyring, MasterKeyError, MasterKeys
from core.store import Store


def load_master_keys(settings: Settings, *, create: bool = True) -> MasterKeys:
    """``ALLIANCE_MASTER_KEY`` when set; else the key file in ``ALLIANCE_HOME`` (created in development)."""
    if settings.master_key is not None and settings.master_key.get_secret_value().strip():
        return MasterKeys.from_env_value(settings.master_key.get_secret_value())
    path = settings.master_key_file
    if path.exists():
        return MasterKeys.load_file(path)
    if settings.env != "development" or not create:
        raise MasterKeyError(f"no master key: set ALLIANCE_MASTER_KEY (no key file at {path})")
    return MasterKeys.create_file(path)


def open_store(settings: Settings, *, migrate: bool = True) -> Store:
    """Open (and migrate) the configured store with the master keys, refusing keys that do not match the data."""
    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    return Store.open(settings.effective_database_url, migrate=migrate, keyring=Keyring(load_master_keys(settings)))


@dataclass(frozen=True)
class Rotation:
    """What ``alliance keys rotate`` did: the version now wrapping every data key, how many keys
    it re-wrapped, and whether it completed an earlier, interrupted rotation instead of adding a
    version."""

    version: int
    moved: int
    resumed: bool


def rotate_master_key(settings: Settings) -> Rotation:
    """Re-wrap every master-wrapped data key under a new master version (see ``alliance keys rotate``).

    With a key file the new version is written to it before the database is touched, so a crash
    between the two leaves a version that wraps nothing, never data wrapped by a key that is not on
    disk. A run after such a crash finds that version unadopted and completes the rotation with it
    rather than piling another version on top. With ``ALLIANCE_MASTER_KEY`` the operator supplies
    the new version; a run only re-wraps under it, so running again is harmless.
    """
    current = load_master_keys(settings)
    from_env = settings.master_key is not None and bool(settings.master_key.get_secret_value().strip())
    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    store = Store.open(settings.effective_database_url, keyring=Keyring(current))
    try:
        with store.session() as session:
            pending = None if from_env else store.keyring.unadopted_version(session)
        keys = current if from_env or pending is not None else current.with_new_version()
        if keys is not current:
            keys.save(settings.master_key_file)
        with store.session() as session:
            moved = Keyring(keys).rotate(session)
    finally:
        store.close()
    return Rotation(keys.active, moved, pending is not None)
