"""The provider contract, discovery and the in-memory fake."""

from core.sync.types import (
    ChangePage,
    CursorExpired,
    OccurrenceKey,
    ReauthorizationRequired,
    RemoteOccurrence,
    SourceError,
    Status,
    recurrence_id_for,
)
from integrations.base.memory import MemoryCalendar, MemoryProvider
from integrations.base.protocol import CalendarProvider, Capability, InvalidSettings, ProviderContext
from integrations.base.registry import ENTRY_POINT_GROUP, ProviderError, ProviderRegistry, check_provider

__all__ = [
    "ENTRY_POINT_GROUP",
    "CalendarProvider",
    "Capability",
    "ChangePage",
    "CursorExpired",
    "InvalidSettings",
    "MemoryCalendar",
    "MemoryProvider",
    "OccurrenceKey",
    "ProviderContext",
    "ProviderError",
    "ProviderRegistry",
    "ReauthorizationRequired",
    "RemoteOccurrence",
    "SourceError",
    "Status",
    "check_provider",
    "recurrence_id_for",
]
