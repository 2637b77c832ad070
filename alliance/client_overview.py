"""One line per client for the therapist's client list: next session, latest rating and its change,
recent advisory flags. Built from each client's trend (``alliance.trends``), so the list and the
ratings page always agree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from alliance.settings import Settings
from alliance.trends import settings_trend
from core.alerts import Attendance, Flag
from core.clients import list_clients
from core.store import Store

RECENT_SESSIONS = 3
"""Flags fired at one of the client's last this-many past sessions count as recent."""


@dataclass(frozen=True, slots=True)
class ClientLine:
    code: str
    next_session_id: int | None
    next_start: datetime | None
    attended: int
    latest_total: Decimal | None
    change: Decimal | None  # latest total minus the one before it
    flags: tuple[Flag, ...]  # fired at one of the last RECENT_SESSIONS past sessions


def client_lines(
    store: Store, settings: Settings, therapist_id: int, *, now: datetime | None = None
) -> list[ClientLine]:
    """The therapist's active clients by code (never another therapist's; no names)."""
    lines = []
    for client in list_clients(store, therapist_id):
        trend = settings_trend(store, settings, therapist_id, client.code, now=now)
        rows = trend.rows
        ahead = [r for r in rows if r.record.attendance is Attendance.SCHEDULED]
        past = [r for r in rows if r.record.attendance is not Attendance.SCHEDULED]
        totals = [r.record.total for r in rows if r.record.total is not None]
        recent = {r.record.session_id for r in past[-RECENT_SESSIONS:]}
        lines.append(
            ClientLine(
                code=trend.client_code,
                next_session_id=ahead[0].record.session_id if ahead else None,
                next_start=ahead[0].record.start if ahead else None,
                attended=sum(1 for r in past if r.record.attendance is Attendance.ATTENDED),
                latest_total=totals[-1] if totals else None,
                change=totals[-1] - totals[-2] if len(totals) >= 2 else None,
                flags=tuple(f for f in trend.flags if f.session_id in recent),
            )
        )
    return lines


__all__ = ["RECENT_SESSIONS", "ClientLine", "client_lines"]
