"""One self-validating settings object, read from ``ALLIANCE_*`` environment variables."""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
import tzlocal
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _local_zone() -> str:
    try:
        name = tzlocal.get_localzone_name()
    except Exception:  # tzlocal raises several kinds when the system zone is unset or odd
        return "UTC"
    return "UTC" if name in (None, "Etc/UTC", "Etc/Universal") else name


class ConfigFileError(ValueError):
    """The file named by ``ALLIANCE_CONFIG`` is missing, unreadable or names unknown settings."""


class Settings(BaseSettings):
    """Alliance's configuration; every field can be set as ``ALLIANCE_<NAME>``.

    ``ALLIANCE_CONFIG`` may name a TOML file with the same settings in lower case
    (``timezone = "Europe/Madrid"``); environment variables win over the file.
    """

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
    # Jobs (the embedded worker inside ``alliance serve``).
    sync_interval_minutes: int = Field(default=10, ge=1, le=24 * 60)
    job_max_attempts: int = Field(default=8, ge=1, le=100)
    # How long a worker's claim on an outbox delivery or periodic run lasts: a worker that died
    # mid-run (SIGKILL, lost machine) has its work run again by another one after this. Longer
    # than the slowest handler (a first mirror of a large calendar), short enough to recover soon.
    job_claim_seconds: int = Field(default=600, ge=10, le=24 * 3600)
    # Per-connection sync backoff (core.sync.backoff): after a throttled / failing provider the
    # connection waits Retry-After, else base * 2^(n-1) capped, with full jitter; after
    # sync_max_failures failures in a row it "needs attention" and the therapist gets one e-mail.
    sync_backoff_base_seconds: float = Field(default=30.0, gt=0, le=3600)
    sync_backoff_cap_seconds: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)
    sync_max_failures: int = Field(default=8, ge=1, le=1000)
    worker_poll_seconds: float = Field(default=2.0, gt=0, le=60)
    # Finished outbox events, deliveries and jobs are deleted this long after they finished (a
    # daily job); parked ones stay until retried.
    job_retention_days: int = Field(default=14, ge=1, le=3650)
    # Logs: "text" is one key=value line per record, "json" one JSON object per line.
    log_format: Literal["text", "json"] = "text"
    # Outgoing mail (alliance/mail.py): SMTP when a host is set, else .eml files in ALLIANCE_HOME/mail.
    # The sender's name is neutral on purpose: a client's inbox should not announce therapy.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    mail_from: str = "Appointments <appointments@localhost>"
    # How often the worker sends the mail that is due.
    mail_poll_seconds: int = Field(default=30, ge=1, le=3600)
    # Feeds added through the web API may only be fetched from public internet addresses, so an
    # account cannot make the server read its own network (integrations/ics/public_only.py).
    # True lifts that, for a practice whose calendar server is on its own network.
    allow_private_feeds: bool = False
    # Encoded occurrence listings kept in the web process between requests, reused while the
    # listing is unchanged (portal/listing_cache.py); 0 turns the cache off.
    api_cache_mb: int = Field(default=32, ge=0, le=4096)
    # A verified API token is trusted this many seconds before it is checked again; a revocation
    # made in another process (the CLI) reaches this one within that time (portal/token_cache.py).
    api_token_cache_seconds: float = Field(default=10.0, ge=0, le=300)
    # Where people reach the web service; links printed by the CLI (password setup) start with it.
    base_url: str = "http://127.0.0.1:8000"
    # Google Calendar: API and OAuth endpoints (Google's by default; the sandbox emulator in tests)
    # and the OAuth client ("Desktop app" type) that `alliance connect google` signs in with.
    google_api_url: str = "https://www.googleapis.com/calendar/v3/"
    google_auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_url: str = "https://oauth2.googleapis.com/token"
    google_client_id: str | None = None
    google_client_secret: SecretStr | None = None
    # Client links and pages (issue 7, clientlink): how long a link lives after its session, when
    # Join opens, when the rating opens after the scheduled end (no call signal), the shortest call
    # that is rated (when the real times are known), failed link look-ups allowed per address.
    link_valid_days: int = Field(default=7, ge=0, le=365)
    join_opens_minutes: int = Field(default=15, ge=0, le=24 * 60)
    rating_delay_minutes: int = Field(default=5, ge=0, le=24 * 60)
    rating_min_call_minutes: int = Field(default=10, ge=0, le=24 * 60)
    link_failures_per_minute: int = Field(default=10, ge=1, le=10_000)
    # Outlook / Microsoft 365 (issue 5): the identity platform's authority (https with a tenant path:
    # "common", "organizations" or a tenant id), Graph's base URL, the app registration that
    # `alliance connect outlook` signs in with, and an extra CA bundle to trust for both (a private
    # CA, or the sandbox emulator's test CA; unset: the system's trust store).
    ms_authority: str = "https://login.microsoftonline.com/common"
    graph_api_url: str = "https://graph.microsoft.com/v1.0"
    ms_client_id: str | None = None
    ms_client_secret: SecretStr | None = None
    ms_ca_bundle: Path | None = None
    # Alliance-rating alerts (core.alerts, rules R1-R8 of reference/clinical.md section H): the
    # defaults are the reference's; a practice with its own norms (e.g. 34) overrides them here.
    alert_cutoff: Decimal = Field(default=Decimal(36), ge=0, le=40, decimal_places=1)
    alert_item_low: Decimal = Field(default=Decimal(9), ge=0, le=10, decimal_places=1)
    alert_drop_from_previous: Decimal = Field(default=Decimal(1), gt=0, le=40, decimal_places=1)
    alert_drop_from_max: Decimal = Field(default=Decimal(2), gt=0, le=40, decimal_places=1)
    alert_high_previous: Decimal = Field(default=Decimal(39), ge=0, le=40, decimal_places=1)
    alert_early_sessions: int = Field(default=3, ge=1, le=50)
    alert_missing_run: int = Field(default=2, ge=1, le=50)
    alert_no_show_priority_before: int = Field(default=3, ge=1, le=50)
    alert_cancellations: int = Field(default=2, ge=1, le=50)
    alert_cancellation_window: int = Field(default=4, ge=1, le=50)
    # --- Zoom and video links (issue 6) ---
    # Zoom's REST API (v2) and OAuth host (token at <oauth_url>/oauth/token, consent at
    # <oauth_url>/oauth/authorize); the sandbox emulator in tests.
    zoom_api_url: str = "https://api.zoom.us/v2"
    zoom_oauth_url: str = "https://zoom.us"
    # Secret token of the Zoom app's event subscription: verifies x-zm-signature on /webhooks/zoom.
    zoom_webhook_secret: SecretStr | None = None
    # A user-level Zoom OAuth app for /connect/zoom (optional; `alliance connect zoom` needs none).
    zoom_client_id: str | None = None
    zoom_client_secret: SecretStr | None = None
    # Meetings are created this many days ahead, never for the whole mirrored year.
    video_window_days: int = Field(default=14, ge=1, le=60)
    # Meeting create/update requests per Zoom host per UTC day (Zoom allows 100).
    video_daily_budget: int = Field(default=100, ge=1, le=100)
    video_max_attempts: int = Field(default=6, ge=1, le=50)
    # How often the worker sweeps sessions entering the window / due for a retry.
    video_sweep_seconds: int = Field(default=300, ge=5, le=24 * 3600)
    # How often the worker applies stored Zoom webhook events (meeting.ended -> session.ended).
    video_events_seconds: int = Field(default=5, ge=1, le=3600)
    # How long one provisioning run may hold a session's row (its lease) before another worker may
    # take the session over: a worker that died mid-create is replaced after this. Keep it well
    # above the longest Zoom request (timeouts included) and below the outbox claim (10 minutes).
    video_lease_seconds: int = Field(default=120, ge=1, le=600)
    # Google push (issue 4): where providers reach this service from the internet (HTTPS, no
    # trailing slash), e.g. https://alliance.example.org. Unset: no push channels are opened and
    # connections are kept up by the reconciliation sync alone.
    public_url: str | None = None
    # --- Client e-mail (issue 7, clientmail: core/client_mail) ---
    # Reminders this many hours before a session ("24,1"; whole hours, 1 to 336; "" for none).
    reminder_hours: str = "24,1"
    # The language of client e-mails: no per-client language preference is stored (the client
    # pages follow the browser), so one language per practice.
    client_mail_language: Literal["en", "es"] = "en"
    # How often the worker re-checks sessions whose client mail is about to go out.
    client_mail_sweep_seconds: int = Field(default=300, ge=10, le=24 * 3600)
    # --- Scale-out (issue 9, alliance/queue) ---
    # Which job queue runs background work: "procrastinate" (PostgreSQL only; the default there) or
    # "embedded" (the in-process worker; the default on SQLite). Unset: chosen by the database.
    queue: Literal["procrastinate", "embedded"] | None = None
    # procrastinate workers: how often each writes its heartbeat, and when a heartbeat counts as
    # stale (the stalled-jobs reaper retries such a worker's jobs; /readyz of a worker host fails).
    worker_heartbeat_seconds: float = Field(default=10.0, gt=0, le=60)
    worker_stale_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Jobs one procrastinate worker runs at once (``alliance worker``, and the worker inside
    # ``alliance serve`` on PostgreSQL); ``alliance worker --concurrency`` overrides it. A sync
    # spends most of its time waiting for the provider, so one job at a time left a worker mostly
    # idle while its queue grew (benchmarks/README.md, "Worker concurrency"). The embedded queue
    # (SQLite) runs one job at a time whatever this says.
    worker_concurrency: int = Field(default=4, ge=1, le=64)
    # --- Push pings (webhooks/google, webhooks/outlook) ---
    # Ping-started syncs of one calendar begin at least this many milliseconds apart: the first
    # ping after a quiet spell syncs at once, and the pings of a burst (quick successive edits, a
    # series edit) arriving within this spacing of the last sync's start join one sync due at its
    # end, i.e. one events.list. Off (0) by default: a therapist's successive edits each wait up
    # to the spacing (1 s made the Google push benchmark's p50 1.07 s against its 1 s target).
    # benchmarks/README.md
    # (load test, "push spacing") has the measurements.
    push_sync_spacing_ms: int = Field(default=0, ge=0, le=10_000)

    @field_validator("reminder_hours")
    @classmethod
    def _reminder_hours(cls, value: str) -> str:
        from core.client_mail.plan import parse_hours  # a pure module: no database, no provider

        return ",".join(str(h) for h in parse_hours(value))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = os.environ.get("ALLIANCE_CONFIG")
        if not path:
            return (init_settings, env_settings)
        _check_config_file(Path(path), set(settings_cls.model_fields))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=path))

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

    @field_validator("public_url")
    @classmethod
    def _http_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (http:// only for local tests)")
        return value.rstrip("/")

    @field_validator("google_api_url", "google_auth_url", "google_token_url", "zoom_api_url", "zoom_oauth_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("ms_authority")
    @classmethod
    def _https_authority(cls, value: str) -> str:
        # MSAL refuses anything else: an https URL whose path names the tenant.
        head, _, tenant = value.removeprefix("https://").rstrip("/").partition("/")
        if not value.startswith("https://") or not head or not tenant:
            raise ValueError("must be https://<host>/<tenant>, e.g. https://login.microsoftonline.com/common")
        return value.rstrip("/")

    @field_validator("graph_api_url")
    @classmethod
    def _graph_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (e.g. https://graph.microsoft.com/v1.0)")
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

    @model_validator(mode="after")
    def _backoff_cap_not_below_base(self) -> Settings:
        if self.sync_backoff_cap_seconds < self.sync_backoff_base_seconds:
            raise ValueError("ALLIANCE_SYNC_BACKOFF_CAP_SECONDS must not be below ALLIANCE_SYNC_BACKOFF_BASE_SECONDS")
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


def _check_config_file(path: Path, known: set[str]) -> None:
    # Fail loudly on a typo: a silently ignored "tmezone" would be worse than no file at all.
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigFileError(f"ALLIANCE_CONFIG: no such file {path}") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(f"ALLIANCE_CONFIG: {path} is not valid TOML ({exc})") from None
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigFileError(f"ALLIANCE_CONFIG: unknown setting(s) {', '.join(unknown)} in {path}")
