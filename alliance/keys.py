"""Where the running service gets its master keys from."""

from __future__ import annotations

from alliance.settings import Settings
from core.crypto import MasterKeyError, MasterKeys


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
