"""One self-validating settings object, read from ``ALLIANCE_*`` environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
import tzlocal
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _local_zone() -> str:
    try:
        name = tzlocal.get_localzone_name()
    except Exception:  # tzlocal raises several kinds when the system zone is unset or odd
        return "UTC"
    return "UTC" if name in (None, "Etc/UTC", "Etc/Universal") else name


class Settings(BaseSettings):
    """Alliance's configuration; every field can be set as ``ALLIANCE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="ALLIANCE_", extra="ignore")

    env: Literal["development", "production"] = "development"
    # Base64 AES-256 key, or "2:<b64>,1:<b64>" during a rotation. Unset in development: a key
    # file is created in ALLIANCE_HOME with mode 0600 on first run.
    master_key: SecretStr | None = None
    home: Path = Field(default_factory=lambda: platformdirs.user_data_path("alliance"))
    database_url: str | None = None
    timezone: str = Field(default_factory=_local_zone)
    default_therapist_email: str = "therapist@localhost"
    window_past_days: int = Field(default=60, ge=0, le=3650)
    window_future_days: int = Field(default=365, ge=1, le=3650)
    # Where people reach the web service; links printed by the CLI (password setup) start with it.
    base_url: str = "http://127.0.0.1:8000"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Madrid)") from None
        return value

    @field_validator("base_url")
    @classmethod
    def _http_base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("only sqlite:/// and postgresql+psycopg:// URLs are supported")
        return value

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        # Refuse to start rather than run a production service on a key file nobody backs up.
        if self.env == "production" and (self.master_key is None or not self.master_key.get_secret_value().strip()):
            raise ValueError(
                "ALLIANCE_MASTER_KEY must be set when ALLIANCE_ENV=production "
                "(generate one with 'alliance keys generate')"
            )
        return self

    @property
    def master_key_file(self) -> Path:
        return self.home / "master.key"

    @cached_property
    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file inside ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'alliance.db'}"
