"""Who a command acts as, for the audit log (core.audit): the default therapist, from this user."""

from __future__ import annotations

import getpass

from core.audit import Actor

__all__ = ["cli_actor"]


def cli_actor(therapist_id: int) -> Actor:
    """The audit actor of a command run, e.g. ``Actor(1, "cli ana")``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = "unknown"
    return Actor(therapist_id, f"cli {user}"[:120])
