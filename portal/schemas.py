"""Request and response bodies of the JSON API (Create / Public per resource, STYLE 9)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# No control characters: they have no place in a label, and PostgreSQL refuses NUL in text.
_LABEL = r"^[^\x00-\x1f\x7f]*$"


class TherapistPublic(BaseModel):
    """The signed-in therapist."""

    id: int
    email: str
    display_name: str
    timezone: str


class ApiTokenCreate(BaseModel):
    """A new personal API token."""

    name: str = Field(min_length=1, max_length=100, pattern=_LABEL, description="What the token is for.")


class ApiTokenPublic(BaseModel):
    """A personal API token as listed: never its secret."""

    id: int
    name: str
    prefix: str = Field(description="The first characters after 'alliance_', to recognise the token.")
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


class ApiTokenCreated(ApiTokenPublic):
    """A token just created: ``token`` is shown this once and cannot be retrieved again."""

    token: str


class Readiness(BaseModel):
    """Each readiness check: ``ok`` or what is wrong."""

    status: str = Field(description="'ready' or 'unavailable'.")
    checks: dict[str, str]


# -- instants in queries and bodies -----------------------------------------------------------------

# An ISO 8601 date, or a date-time with an optional offset (naive ones are UTC). Checked by pattern
# first so that what the schema calls invalid is refused, then parsed (portal.params.parse_instant).
INSTANT_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?$"
)
INSTANT_HELP = (
    "An ISO 8601 date (`2026-11-01`, midnight UTC) or date-time (`2026-11-01T17:00:00+01:00`; UTC without offset)."
)

Modality = Literal["online", "in_person"]


# -- connections ----------------------------------------------------------------------------------------


class ConnectionCreate(BaseModel):
    """A calendar to mirror. The API takes remote feeds only; files on the server are the operator's (CLI)."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["ics"] = Field(description="The calendar provider; `ics` is an ICS/iCal feed.")
    source: str = Field(
        min_length=1,
        max_length=2048,
        pattern=_LABEL,
        description="The feed address: `https://`, `http://` or `webcal://`. Stored encrypted; never shown again.",
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=_LABEL,
        description="Unique among your connections (default: the feed's host name).",
    )


class ConnectionUpdate(BaseModel):
    """Changes to a connection (only the fields sent)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=_LABEL)


class SyncCounts(BaseModel):
    """What one sync did."""

    created: int = 0
    updated: int = 0
    rescheduled: int = 0
    restored: int = 0
    cancelled: int = 0
    unchanged: int = 0
    full_resync: bool = False


class ConnectionPublic(BaseModel):
    """A connection as listed: health and last sync, never its feed address or any secret."""

    id: int
    name: str
    provider: str
    health: str = Field(description="`ok`, `error`, `needs_reconnect` or `needs_attention` (failing K times in a row).")
    last_error: str | None = Field(description="One line about the last failed sync.")
    last_sync_at: datetime | None
    last_success_at: datetime | None
    last_result: SyncCounts | None = Field(description="The counts of the last sync.")
    occurrences: int = Field(description="Mirrored occurrences that are not cancelled.")


class SyncResult(SyncCounts):
    """The counts of a sync just run."""

    connection_id: int


# -- occurrences -------------------------------------------------------------------------------------


class OccurrencePublic(BaseModel):
    """One mirrored occurrence, with the field names of `alliance events --json`."""

    id: int
    uid: str = Field(description="The event's iCalendar UID.")
    recurrence_id: str | None = Field(
        description="The original start of an instance of a series; null for a single event."
    )
    start: str = Field(description="UTC instant with offset, or `YYYY-MM-DD` when all-day.")
    end: str = Field(description="UTC instant with offset, or `YYYY-MM-DD` (exclusive) when all-day.")
    all_day: bool
    timezone: str | None = Field(description="The event's IANA zone.")
    status: Literal["confirmed", "tentative", "cancelled"]
    title: str
    location: str
    video_url: str | None = Field(
        description="A Zoom, Meet, Teams, Webex, Whereby, Jitsi or Doxy.me link found in the event."
    )
    connection: str = Field(description="The connection's name.")
    connection_id: int


class HistoryEntryPublic(BaseModel):
    """One change to an occurrence, as the sync saw it."""

    kind: str = Field(description="`created`, `rescheduled`, `cancelled`, `restored` or `updated`.")
    at: datetime
    old_start: datetime | None
    old_end: datetime | None
    new_start: datetime | None
    new_end: datetime | None


class OccurrenceDetail(OccurrencePublic):
    """One occurrence with its history, oldest change first, and its session if it is one."""

    session_id: int | None
    history: list[HistoryEntryPublic]


# -- clients and sessions -------------------------------------------------------------------------------

_CODE = r"^[2-9A-HJKMNP-Za-hjkmnp-z]{4,12}$"
_PHONE = r"^\+?[0-9 ()./-]{3,40}$"


class ClientCreate(BaseModel):
    """A new client; everything but the code is stored encrypted with the client's own key."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200, pattern=_LABEL)
    email: str | None = Field(
        default=None,
        max_length=320,
        pattern=_LABEL,
        description="Events with it among their attendees become sessions.",
    )
    phone: str | None = Field(default=None, pattern=_PHONE)
    timezone: str | None = Field(
        default=None, max_length=64, pattern=_LABEL, description="An IANA zone, e.g. Europe/Berlin."
    )
    modality: Modality | None = Field(default=None, description="The preferred modality of new sessions.")
    language: Literal["en", "es"] | None = Field(
        default=None, description="The client's language for e-mails and their page (else the practice's)."
    )
    code: str | None = Field(
        default=None,
        pattern=_CODE,
        description="Use this code instead of a random one (never initials: they re-identify people).",
    )


class ClientUpdate(BaseModel):
    """Changes to a client: only the fields sent change; `null` clears a detail."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200, pattern=_LABEL)
    email: str | None = Field(default=None, max_length=320, pattern=_LABEL)
    phone: str | None = Field(default=None, pattern=_PHONE)
    timezone: str | None = Field(default=None, max_length=64, pattern=_LABEL)
    modality: Modality | None = None
    language: Literal["en", "es"] | None = None
    archived: bool | None = Field(
        default=None, description="`true` archives (no new sessions by series or rules), `false` restores."
    )


class ClientDetailsPublic(BaseModel):
    """What identifies a client; in answers only with `?reveal=true`."""

    name: str | None
    email: str | None
    phone: str | None
    timezone: str | None
    modality: Modality | None
    language: str | None = None


class ClientPublic(BaseModel):
    """A client by its pseudonymous code."""

    id: int
    code: str
    archived: bool
    archived_at: datetime | None
    created_at: datetime
    details: ClientDetailsPublic | None = Field(description="Null unless `?reveal=true` (or erased).")
    erased: bool = Field(description="True when the client's key was destroyed and the details are gone.")


class SessionUpdate(BaseModel):
    """Changes to a session."""

    model_config = ConfigDict(extra="forbid")

    modality: Modality


class SessionPublic(BaseModel):
    """An occurrence that belongs to a client (times as in occurrences)."""

    id: int
    occurrence_id: int
    uid: str
    recurrence_id: str | None
    start: str
    end: str
    all_day: bool
    status: Literal["confirmed", "tentative", "cancelled"]
    client: str = Field(description="The client's code.")
    modality: Modality
    source: Literal["manual", "series", "rule"] = Field(
        description="Why it is a session; manual beats series beats rule."
    )
    connection: str
    connection_id: int
    client_details: ClientDetailsPublic | None = Field(description="Null unless `?reveal=true`.")
    cancelled_by: Literal["client", "therapist"] | None = Field(
        default=None,
        description="Who cancelled this cancelled session, as you recorded it (`PUT .../cancellation`); "
        "null when it is not cancelled or nobody recorded it. Calendars never say.",
    )
    cancelled_late: bool | None = Field(
        default=None, description="The client cancelled at short notice; null when `cancelled_by` is null."
    )


class AssignmentCreate(BaseModel):
    """What `alliance assign` does: one occurrence of an event, or its series from an instant on."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    uid: str = Field(
        min_length=1, max_length=1024, pattern=_LABEL, description="The event's UID (`uid` of an occurrence)."
    )
    client: str = Field(min_length=1, max_length=40, description="The client's code.")
    occurrence: str | None = Field(
        default=None,
        pattern=INSTANT_PATTERN,
        description="Only the occurrence with this original start (recurrence_id) or start. " + INSTANT_HELP,
    )
    connection: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=_LABEL,
        description="The connection (name or id) of the UID.",
    )
    from_: str | None = Field(
        default=None,
        alias="from",
        pattern=INSTANT_PATTERN,
        description="A series: assign occurrences starting then or later (default: now). " + INSTANT_HELP,
    )
    modality: Modality | None = Field(default=None, description="One occurrence only: its modality.")


class SeriesAssignmentPublic(BaseModel):
    """A series assigned to a client from an instant on; later instances follow as they sync."""

    model_config = ConfigDict(populate_by_name=True)

    id: int
    uid: str
    client: str
    connection_id: int
    from_: datetime = Field(alias="from")
    sessions_assigned: int = Field(description="Occurrences already mirrored that are now this client's sessions.")


class AssignmentResult(BaseModel):
    """One of the two is set: the session of one occurrence, or the series assignment."""

    session: SessionPublic | None
    series: SeriesAssignmentPublic | None


# -- query strings ----------------------------------------------------------------------------------------
# Models, so that an unknown parameter is a 422 instead of silently ignored: `?form=2026-11-01`
# would otherwise answer the default window as if it were the one asked for.


class _StrictQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RevealQuery(_StrictQuery):
    """``?reveal=true`` adds names, e-mail addresses and phone numbers."""

    reveal: bool = Field(default=False, description="Include names, e-mail addresses and phone numbers.")


class ClientListQuery(RevealQuery):
    archived: bool = Field(default=False, description="Include archived clients.")


class OccurrenceQuery(_StrictQuery):
    start: str | None = Field(
        default=None,
        alias="from",
        pattern=INSTANT_PATTERN,
        description="Start of the window (default: today, 00:00 UTC). " + INSTANT_HELP,
    )
    end: str | None = Field(
        default=None,
        alias="to",
        pattern=INSTANT_PATTERN,
        description="End of the window (default: 30 days after `from`). " + INSTANT_HELP,
    )
    include_cancelled: bool = Field(default=False, description="Also list cancelled occurrences.")


class SessionQuery(RevealQuery):
    start: str | None = Field(
        default=None,
        alias="from",
        pattern=INSTANT_PATTERN,
        description="Start of the window (default: none). " + INSTANT_HELP,
    )
    end: str | None = Field(
        default=None,
        alias="to",
        pattern=INSTANT_PATTERN,
        description="End of the window (default: none). " + INSTANT_HELP,
    )
    client: str | None = Field(default=None, min_length=1, max_length=40, description="Only this client's (code).")
