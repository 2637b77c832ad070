"""The one e-mail a therapist gets when a calendar keeps failing to sync ("needs attention").

Queued in the transaction that records the failure (:func:`core.sync.backoff.record_failure`),
once per failure streak: the dedupe key names the connection and when the streak began, so a
connection that recovers and later fails again gets one new message, never one per failed sync.
The subject is neutral; the body names the calendar (the therapist's own label for it) and the
last error, which says what to do. No client and no appointment is ever named.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.mail import Envelope, queue_mail
from core.store import Store
from core.store.models import Therapist
from core.sync.backoff import NEEDS_RECONNECT, FailureRecord

__all__ = ["PURPOSE", "attention_key", "attention_message", "queue_attention_mail"]

PURPOSE = "sync_attention"
SUBJECT = "A calendar connection needs your attention"


def attention_key(connection_id: int, failing_since: datetime) -> str:
    """One key per connection and failure streak."""
    return f"{PURPOSE}:{connection_id}:{failing_since.isoformat()}"


def attention_message(record: FailureRecord, *, base_url: str | None = None) -> tuple[str, str]:
    """(subject, text) of the message."""
    if record.health == NEEDS_RECONNECT:
        todo = "Connect the calendar again (sign in once more); syncing resumes right after."
    else:
        todo = (
            "Alliance keeps trying on its own, less often while the problem lasts. If it does not clear "
            "within a day, check that the calendar still exists and is shared with the account you "
            "connected, or connect it again."
        )
    lines = [
        "Hello,",
        "",
        f'the calendar connection "{record.name}" has failed to sync {record.consecutive_failures} times in a row,',
        f"since {record.failing_since:%Y-%m-%d %H:%M} UTC. Changes made in that calendar since then are not",
        "in Alliance yet.",
        "",
        f"Last error: {record.last_error or 'unknown'}",
        "",
        todo,
    ]
    if base_url:
        lines += ["", f"Connection status: {base_url.rstrip('/')}/"]
    return SUBJECT, "\n".join(lines) + "\n"


def queue_attention_mail(
    store: Store,
    session: Session,
    connection_id: int,
    record: FailureRecord,
    *,
    now: datetime,
    base_url: str | None = None,
) -> bool:
    """Queue the message in ``session``; False when this streak's message was queued before."""
    email = session.scalar(select(Therapist.email).where(Therapist.id == record.therapist_id))
    if not email:
        return False
    subject, text = attention_message(record, base_url=base_url)
    return queue_mail(
        store,
        session,
        dedupe_key=attention_key(connection_id, record.failing_since),
        purpose=PURPOSE,
        therapist_id=record.therapist_id,
        envelope=Envelope(to=email, subject=subject, text=text),
        send_after=now,
    )
