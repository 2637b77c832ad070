"""Who cancelled a session: what a calendar does not say, recorded by the therapist in Alliance."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UtcDateTime, utcnow


class SessionCancellation(Base):
    """Who cancelled one session (``client`` or ``therapist``) and whether it was late (alert rule R8).

    The calendar only says *that* an event was cancelled; this row says by whom. It is kept when the
    session is restored (a restored session simply is not cancelled, so the row is not read).
    """

    __tablename__ = "session_cancellations"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    cancelled_by: Mapped[str] = mapped_column(String(20))
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
