"""Request and response bodies of the JSON API (Create / Public per resource, STYLE 9)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

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
