"""The Google Calendar provider (read-only mirror; push and write-back come later)."""

from integrations.google.provider import GoogleProvider

__all__ = ["GoogleProvider"]
