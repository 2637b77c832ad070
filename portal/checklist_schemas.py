"""Request and response bodies of the checklist API (Create / Public, STYLE 9)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.checklists.items import MAX_ITEMS, MAX_TEXT
from core.checklists.service import MAX_ANSWER_TEXT
from portal.schemas import INSTANT_HELP, INSTANT_PATTERN

# No control characters (PostgreSQL refuses NUL in text; a label has no use for the others).
_TEXT = r"^[^\x00-\x1f\x7f]*$"
_KEY = r"^[A-Za-z][A-Za-z0-9_]{0,39}$"

PhaseName = Literal["pre", "start", "post"]
AppliesName = Literal["every_session", "online", "first_session"]
ResponseName = Literal["check", "text"]
StatusName = Literal["done", "skipped"]


class ChecklistItemBody(BaseModel):
    """One item of a checklist: a stable key, the text the therapist reads, when and how it is answered."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=_KEY, description="Stable across versions, e.g. 'S2'; unique within the list.")
    text: str = Field(min_length=1, max_length=MAX_TEXT, pattern=_TEXT)
    applies: AppliesName = Field(default="every_session", description="Which sessions the item is asked at.")
    response: ResponseName = Field(default="check", description="'text': done needs a text (e.g. S2's place).")
    sensitive: bool = Field(default=False, description="Answers are health or location data.")
    blocking: bool = Field(default=False, description="The session is flagged until the item is done.")
    refs: list[str] = Field(default_factory=list, max_length=20, description="Source numbers in the reference.")


class TemplateQuery(BaseModel):
    """Filters of the template listing (unknown parameters are refused, not ignored)."""

    model_config = ConfigDict(extra="forbid")

    phase: PhaseName | None = Field(default=None, description="Only this list.")
    all_versions: bool = Field(default=False, description="Every version, not only the current ones.")


class FlagQuery(BaseModel):
    """The window of the flag listing: sessions overlapping ``[from, to)``; default all of them."""

    model_config = ConfigDict(extra="forbid")

    start: str | None = Field(default=None, alias="from", pattern=INSTANT_PATTERN, description=INSTANT_HELP)
    end: str | None = Field(default=None, alias="to", pattern=INSTANT_PATTERN, description=INSTANT_HELP)


class TemplateCreate(BaseModel):
    """A new version of one of your checklists (the whole list, in order)."""

    model_config = ConfigDict(extra="forbid")

    phase: PhaseName
    items: list[ChecklistItemBody] = Field(min_length=1, max_length=MAX_ITEMS)


class TemplatePublic(BaseModel):
    """One version of one of your checklists."""

    id: int
    phase: PhaseName
    version: int
    current: bool = Field(description="New runs start on this version.")
    created_at: datetime
    items: list[ChecklistItemBody]


class AnswerBody(BaseModel):
    """Done (with a text where the item needs one, or an optional note), or skipped with a reason."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=_KEY)
    status: StatusName
    text: str | None = Field(default=None, max_length=MAX_ANSWER_TEXT, pattern=_TEXT)
    reason: str | None = Field(default=None, max_length=MAX_TEXT, pattern=_TEXT)


class AnswersCreate(BaseModel):
    """Answers to one list of a session; the newest answer to an item counts, earlier ones are kept."""

    model_config = ConfigDict(extra="forbid")

    answers: list[AnswerBody] = Field(min_length=1, max_length=MAX_ITEMS)


class AnswerPublic(BaseModel):
    status: StatusName
    text: str | None
    reason: str | None
    answered_by: int
    answered_at: datetime
    erased: bool = Field(description="The client's data was erased: text and reason are gone.")


class ItemStatePublic(BaseModel):
    item: ChecklistItemBody
    answer: AnswerPublic | None = Field(description="The newest answer, or null while the item is open.")


class RunPublic(BaseModel):
    """One list of one session: the version it uses, the items that apply, their answers."""

    phase: PhaseName
    template_id: int
    template_version: int
    started: bool
    started_by: int | None
    started_at: datetime | None
    updated_at: datetime | None
    complete: bool
    items: list[ItemStatePublic]


class FlagPublic(BaseModel):
    """A blocking item not done yet (the client's location, S2, on an online session)."""

    session_id: int
    phase: PhaseName
    key: str
    text: str
    skipped: bool = Field(description="Skipped with a reason: still open, the item has to be done.")


class SessionChecklistsPublic(BaseModel):
    session_id: int
    online: bool
    first_session: bool = Field(description="The client's first session (S7 is asked).")
    lists: list[RunPublic]
    flags: list[FlagPublic]
