"""Where the running service gets its master keys from."""

from __future__ import annotations

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
