"""Tables of checklist templates (versioned, per therapist), runs (one per session and list) and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UtcDateTime, utcnow


class ChecklistTemplate(Base):
    """One version of one of a therapist's checklists; never changed once written (an edit adds a version)."""

    __tablename__ = "checklist_templates"
    __table_args__ = (UniqueConstraint("therapist_id", "phase", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"), index=True)
    phase: Mapped[str] = mapped_column(String(10))
    version: Mapped[int] = mapped_column(Integer)
    # The items as a JSON list (core.checklists.items.ChecklistItem.to_json): item texts are the
    # therapist's own wording of the frame, not about any client, so they are not encrypted.
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ChecklistRun(Base):
    """One list gone through for one session; keeps pointing at the template version it started with."""

    __tablename__ = "checklist_runs"
    __table_args__ = (UniqueConstraint("session_id", "phase"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    phase: Mapped[str] = mapped_column(String(10))
    template_id: Mapped[int] = mapped_column(ForeignKey("checklist_templates.id"))
    started_by: Mapped[int] = mapped_column(ForeignKey("therapists.id"))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ChecklistAnswer(Base):
    """One answer to one item of a run. Append-only: a changed answer is a new row, the newest one counts."""

    __tablename__ = "checklist_answers"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("checklist_runs.id"), index=True)
    item_key: Mapped[str] = mapped_column(String(40))
    # done | skipped: no health data by itself.
    status: Mapped[str] = mapped_column(String(10))
    # {"text": ..., "reason": ...} as JSON, encrypted with the client's key and bound to the run and
    # item; None when the answer is a bare tick. A location, a callback number or a skip reason
    # ("client in crisis") is health data.
    detail: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    answered_by: Mapped[int] = mapped_column(ForeignKey("therapists.id"))
    answered_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


__all__ = ["ChecklistAnswer", "ChecklistRun", "ChecklistTemplate"]
