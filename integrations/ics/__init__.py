"""The ICS provider: any calendar published as an iCalendar file or feed (read-only)."""

from integrations.ics.provider import IcsProvider

__all__ = ["IcsProvider"]
