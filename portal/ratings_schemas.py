"""Response body of ``GET /api/v1/clients/{code}/ratings``: the rating series and the advisory flags."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

AttendanceName = Literal[
    "attended", "no_show", "client_cancelled", "client_cancelled_late", "therapist_cancelled", "scheduled"
]
RatingName = Literal["completed", "pending", "missing", "declined", "not_requested"]
SeverityName = Literal["info", "review", "priority"]


class RatingItemsPublic(BaseModel):
    """The four items of one rating, 0-10 with one decimal."""

    bond: float = Field(ge=0, le=10, description="Connection: how connected to and respected by the therapist.")
    goals: float = Field(ge=0, le=10, description="Goals and topics: what mattered most to the client.")
    approach: float = Field(ge=0, le=10, description="Way of working.")
    overall: float = Field(ge=0, le=10, description="Overall.")


class RatingSessionPublic(BaseModel):
    """One scheduled session of the client in the series."""

    session_id: int
    number: int = Field(ge=1, description="1 + sessions attended before it (a missed slot gets the next number).")
    start: str = Field(description="UTC, ISO 8601 with offset.")
    end: str = Field(description="UTC, ISO 8601 with offset.")
    attendance: AttendanceName
    rating: RatingName | None = Field(description="Where the session's rating stands.")
    measure: str | None = Field(description="'alliance4' (built-in wording) or 'srs' (licensed text); null unrated.")
    total: float | None = Field(ge=0, le=40, description="The sum of the four items, 0-40; null without a rating.")
    items: RatingItemsPublic | None


class RatingFlagPublic(BaseModel):
    """An advisory flag (therapist-only): the rule, how urgent, why in plain words, the sessions behind it."""

    rule: str = Field(description="R1-R8 of the clinical reference, section H.")
    severity: SeverityName
    session_id: int = Field(description="The session at which the rule fired.")
    explanation: str
    rows: list[int] = Field(description="Ids of the sessions that triggered it, oldest first.")


class ClientRatingsPublic(BaseModel):
    """A client's alliance ratings over sessions, oldest first, with the flags of rules R1-R8."""

    client: str = Field(description="The client's code.")
    cutoff: float = Field(ge=0, le=40, description="Totals below it are below the cutoff (configurable).")
    cutoff_is_heuristic: bool = Field(description="True for the built-in form: the norms belong to the licensed SRS.")
    sessions: list[RatingSessionPublic]
    flags: list[RatingFlagPublic]


__all__ = ["ClientRatingsPublic", "RatingFlagPublic", "RatingItemsPublic", "RatingSessionPublic"]
