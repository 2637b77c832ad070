"""What a checklist item is, independent of storage: a stable key, a text, when it applies, how it is answered."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class Phase(enum.StrEnum):
    """The three therapist checklists of a session."""

    PRE = "pre"  # before the session (T items)
    START = "start"  # at the start of the session (S items)
    POST = "post"  # after the session (P items)


class Applies(enum.StrEnum):
    """Which sessions an item is asked for."""

    EVERY_SESSION = "every_session"
    ONLINE = "online"  # online sessions only
    FIRST_SESSION = "first_session"  # the client's first session only (e.g. S7, consent)


class Response(enum.StrEnum):
    """How an item is answered when done: ticked, or ticked with a text the item needs (S2: where, which number)."""

    CHECK = "check"
    TEXT = "text"


class AnswerStatus(enum.StrEnum):
    DONE = "done"
    SKIPPED = "skipped"  # needs a reason


KEY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
MAX_TEXT = 500
MAX_ITEMS = 60


class InvalidChecklist(ValueError):
    """A template or an answer that cannot be stored; ``field`` names what is wrong (never echoes a value)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class ChecklistItem:
    """One item of a checklist template."""

    key: str
    text: str
    applies: Applies = Applies.EVERY_SESSION
    response: Response = Response.CHECK
    # Answers to every item are encrypted; ``sensitive`` marks items whose answers are health or
    # location data (shown to the treating therapist only, never in exports or summaries).
    sensitive: bool = False
    # A blocking item is flagged on the session until it is answered (S2 on online sessions).
    blocking: bool = False
    refs: tuple[str, ...] = field(default=())

    def applies_to(self, *, online: bool, first_session: bool) -> bool:
        if self.applies is Applies.ONLINE:
            return online
        if self.applies is Applies.FIRST_SESSION:
            return first_session
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "text": self.text,
            "applies": self.applies.value,
            "response": self.response.value,
            "sensitive": self.sensitive,
            "blocking": self.blocking,
            "refs": list(self.refs),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChecklistItem:
        return cls(
            key=str(data["key"]),
            text=str(data["text"]),
            applies=Applies(data.get("applies", Applies.EVERY_SESSION.value)),
            response=Response(data.get("response", Response.CHECK.value)),
            sensitive=bool(data.get("sensitive", False)),
            blocking=bool(data.get("blocking", False)),
            refs=tuple(str(r) for r in data.get("refs", ())),
        )


def clean_items(items: Sequence[ChecklistItem]) -> tuple[ChecklistItem, ...]:
    """Check a template's items: non-empty, unique well-formed keys, texts of sensible length."""
    if not items:
        raise InvalidChecklist("a checklist needs at least one item", "items")
    if len(items) > MAX_ITEMS:
        raise InvalidChecklist(f"a checklist has at most {MAX_ITEMS} items", "items")
    seen: set[str] = set()
    cleaned = []
    for index, item in enumerate(items):
        if not KEY_PATTERN.match(item.key):
            raise InvalidChecklist(
                "an item key is a letter followed by up to 39 letters, digits or underscores", f"items.{index}.key"
            )
        if item.key.upper() in seen:
            raise InvalidChecklist("item keys must be unique within a checklist", f"items.{index}.key")
        seen.add(item.key.upper())
        text = " ".join(item.text.split())
        if not text:
            raise InvalidChecklist("an item needs a text", f"items.{index}.text")
        if len(text) > MAX_TEXT:
            raise InvalidChecklist(f"an item text has at most {MAX_TEXT} characters", f"items.{index}.text")
        cleaned.append(
            ChecklistItem(item.key, text, item.applies, item.response, item.sensitive, item.blocking, item.refs)
        )
    return tuple(cleaned)


__all__ = [
    "KEY_PATTERN",
    "MAX_ITEMS",
    "MAX_TEXT",
    "AnswerStatus",
    "Applies",
    "ChecklistItem",
    "InvalidChecklist",
    "Phase",
    "Response",
    "clean_items",
]
