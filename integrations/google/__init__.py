"""The Google Calendar provider: mirror, push channels, join-link write-back."""

from integrations.google.provider import GoogleProvider

__all__ = ["GoogleProvider"]
