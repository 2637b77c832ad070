"""An in-memory calendar provider: the reference fake every contract test also runs against."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from core.sync.types import (
    ChangePage,
    CursorExpired,
    OccurrenceKey,
    RemoteOccurrence,
    SourceError,
)
from integrations.base.protocol import Capability, InvalidSettings, ProviderContext


@dataclass
class MemoryCalendar:
    """The "remote side": occurrences plus a change log that cursors point into."""

    items: dict[OccurrenceKey, RemoteOccurrence] = field(default_factory=dict)
    changed_at: dict[OccurrenceKey, int] = field(default_factory=dict)
    seq: int = 0
    epoch: int = 0
    # Fault injection: fail the next listing after this many pages were yielded.
    fail_after_pages: int | None = None

    _named: ClassVar[dict[str, MemoryCalendar]] = {}

    @classmethod
    def named(cls, name: str) -> MemoryCalendar:
        """The calendar registered under ``name`` (created on first use)."""
        return cls._named.setdefault(name, cls())

    @classmethod
    def forget(cls, name: str) -> None:
        cls._named.pop(name, None)

    def put(self, occ: RemoteOccurrence) -> None:
        self.seq += 1
        self.items[occ.key] = occ
        self.changed_at[occ.key] = self.seq

    def delete(self, key: OccurrenceKey) -> None:
        self.seq += 1
        self.items.pop(key, None)
        self.changed_at[key] = self.seq

    def expire_cursors(self) -> None:
        """Make every cursor handed out so far invalid (like Google's 410)."""
        self.epoch += 1


class MemoryProvider:
    """Lists a :class:`MemoryCalendar`; deltas when given a cursor, complete listings otherwise."""

    name: ClassVar[str] = "memory"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.READ_ONLY})

    def __init__(self, calendar: MemoryCalendar, page_size: int = 50) -> None:
        self.calendar = calendar
        self.page_size = page_size

    @classmethod
    def normalize_settings(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        name = raw.get("calendar")
        if not isinstance(name, str) or not name:
            raise InvalidSettings("the memory provider needs a 'calendar' name")
        page_size = raw.get("page_size", 50)
        if not isinstance(page_size, int) or page_size < 1:
            raise InvalidSettings("'page_size' must be a positive integer")
        return {"calendar": name, "page_size": page_size}

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], context: ProviderContext) -> Self:
        clean = cls.normalize_settings(settings)
        return cls(MemoryCalendar.named(clean["calendar"]), clean["page_size"])

    def list_changes(self, cursor: str | None) -> Iterator[ChangePage]:
        cal = self.calendar
        if cursor is None:
            upserts: list[RemoteOccurrence] = [cal.items[k] for k in sorted(cal.items)]
            removals: list[OccurrenceKey] = []
            complete = True
        else:
            try:
                epoch, since = (int(part) for part in cursor.split(":"))
            except ValueError:
                raise CursorExpired(f"unreadable cursor {cursor!r}") from None
            if epoch != cal.epoch:
                raise CursorExpired("cursor from an older epoch")
            changed = sorted(k for k, s in cal.changed_at.items() if s > since)
            upserts = [cal.items[k] for k in changed if k in cal.items]
            removals = [k for k in changed if k not in cal.items]
            complete = False
        next_cursor = f"{cal.epoch}:{cal.seq}"
        items: list[RemoteOccurrence | OccurrenceKey] = [*upserts, *removals]
        chunks = [items[i : i + self.page_size] for i in range(0, len(items), self.page_size)] or [[]]
        for index, chunk in enumerate(chunks):
            if cal.fail_after_pages is not None and index >= cal.fail_after_pages:
                cal.fail_after_pages = None
                raise SourceError("injected failure in the memory calendar")
            is_last = index == len(chunks) - 1
            yield ChangePage(
                upserts=tuple(i for i in chunk if isinstance(i, RemoteOccurrence)),
                removals=tuple(i for i in chunk if isinstance(i, OccurrenceKey)),
                is_last=is_last,
                next_cursor=next_cursor if is_last else None,
                complete=complete,
                total_hint=len(items),
            )
