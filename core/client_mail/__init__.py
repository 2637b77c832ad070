"""E-mail to clients about their sessions: confirmation with an .ics, reminders, the rating link.

:func:`plan` says which messages a session should have now (pure); :func:`reconcile` makes the
outbox (core.mail) match it. Wired as outbox handlers and a sweep in alliance/jobs.py.
"""

from core.client_mail.plan import PURPOSES, Kind, MailPlanConfig, Planned, SessionFacts, parse_hours, plan, timely
from core.client_mail.service import ClientMailConfig, ReconcileResult, reconcile, reconcile_occurrence, sweep

__all__ = [
    "PURPOSES",
    "ClientMailConfig",
    "Kind",
    "MailPlanConfig",
    "Planned",
    "ReconcileResult",
    "SessionFacts",
    "parse_hours",
    "plan",
    "reconcile",
    "reconcile_occurrence",
    "sweep",
    "timely",
]
