"""The append-only, hash-chained audit log of access to notes and client records."""

from core.audit.models import AuditEntry, AuditHead
from core.audit.service import Actor, AuditError, Entry, EntryView, Finding, entries_for, record, record_many, verify

__all__ = [
    "Actor",
    "AuditEntry",
    "AuditError",
    "AuditHead",
    "Entry",
    "EntryView",
    "Finding",
    "entries_for",
    "record",
    "record_many",
    "verify",
]
