"""The sync engine and the data contract sources speak."""

from core.sync.engine import ConnectionGone, EmptySourceRefused, SyncInProgress, SyncReport, sync_connection
from core.sync.types import (
    ChangePage,
    ChangeSource,
    ConsultsMirror,
    CursorExpired,
    MirroredKeys,
    OccurrenceKey,
    ReauthorizationRequired,
    RemoteOccurrence,
    SourceError,
    SourceUnavailable,
    Status,
    recurrence_id_for,
)

__all__ = [
    "ChangePage",
    "ChangeSource",
    "ConnectionGone",
    "ConsultsMirror",
    "CursorExpired",
    "EmptySourceRefused",
    "MirroredKeys",
    "OccurrenceKey",
    "ReauthorizationRequired",
    "RemoteOccurrence",
    "SourceError",
    "SourceUnavailable",
    "Status",
    "SyncInProgress",
    "SyncReport",
    "recurrence_id_for",
    "sync_connection",
]
