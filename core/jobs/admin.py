"""What an operator sees and does about failed work: parked deliveries and jobs, retrying them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select

from core.jobs import _lifecycle
from core.jobs.models import PARKED, OutboxDelivery, QueuedJob
from core.store import OutboxEvent, Store

__all__ = ["ParkedItem", "list_parked", "retry_parked"]

_DELIVERIES: Table = OutboxDelivery.__table__  # type: ignore[assignment]
_JOBS: Table = QueuedJob.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class ParkedItem:
    """A parked delivery (``id`` "delivery:N") or job ("job:N"): ids and the error line, no content."""

    id: str
    type: str
    name: str
    attempts: int
    last_error: str | None
    parked_at: datetime
    event_id: str | None = None
    event_kind: str | None = None
    therapist_id: int | None = None
    connection_id: int | None = None
    occurrence_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["parked_at"] = self.parked_at.isoformat()
        return data


def list_parked(store: Store) -> list[ParkedItem]:
    """Every parked delivery and job, oldest first."""
    items: list[ParkedItem] = []
    with store.session() as session:
        deliveries = session.execute(
            select(OutboxDelivery, OutboxEvent)
            .join(OutboxEvent, OutboxEvent.event_id == OutboxDelivery.event_id)
            .where(OutboxDelivery.status == PARKED)
            .order_by(OutboxDelivery.id)
        ).all()
        for d, e in deliveries:
            items.append(
                ParkedItem(
                    id=f"delivery:{d.id}",
                    type="delivery",
                    name=d.handler,
                    attempts=d.attempts,
                    last_error=d.last_error,
                    parked_at=d.updated_at,
                    event_id=e.event_id,
                    event_kind=e.kind,
                    therapist_id=e.therapist_id,
                    connection_id=e.connection_id,
                    occurrence_id=e.occurrence_id,
                )
            )
        # Job arguments are left out on purpose: ids by convention, but not guaranteed to be.
        for j in session.scalars(select(QueuedJob).where(QueuedJob.status == PARKED).order_by(QueuedJob.id)):
            items.append(
                ParkedItem(
                    id=f"job:{j.id}",
                    type="job",
                    name=j.job,
                    attempts=j.attempts,
                    last_error=j.last_error,
                    parked_at=j.updated_at,
                )
            )
    items.sort(key=lambda i: i.parked_at)
    return items


def _parse_id(item_id: str) -> tuple[str, int]:
    kind, _, number = item_id.partition(":")
    if kind not in ("delivery", "job") or not number.isdigit():
        raise ValueError(f"not a parked item id: {item_id!r} (expected delivery:N or job:N)")
    return kind, int(number)


def retry_parked(store: Store, ids: list[str] | None, now: datetime) -> int:
    """Re-queue the parked items ``ids`` (every parked item with None) with a fresh attempt budget."""
    with store.session() as session:
        if ids is None:
            return _lifecycle.requeue(session, _DELIVERIES, None, now) + _lifecycle.requeue(session, _JOBS, None, now)
        parsed = [_parse_id(i) for i in ids]
        deliveries = [n for kind, n in parsed if kind == "delivery"]
        jobs = [n for kind, n in parsed if kind == "job"]
        count = 0
        if deliveries:
            count += _lifecycle.requeue(session, _DELIVERIES, deliveries, now)
        if jobs:
            count += _lifecycle.requeue(session, _JOBS, jobs, now)
        return count
