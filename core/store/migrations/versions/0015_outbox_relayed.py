"""outbox.relayed_at: the relay reads only the events it has not handed out yet

The relay looked for events with no delivery row: every event still being delivered was checked
again on every call (an anti-join probe each), so its work grew with the deliveries' backlog. In
the load storm (500 calendars) one call touched ~1,600 buffers to find a handful of new events.
Now the relay marks what it took in the same transaction as the deliveries it creates, and a
partial index holds the unmarked events alone. Events relayed before this migration (they have
deliveries, or were marked processed because no handler wanted them) are marked here.

Revision ID: 0015_outbox_relayed
Revises: 0014_fetch_plan
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_outbox_relayed"
down_revision: str | Sequence[str] | None = "0014_fetch_plan"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNRELAYED = sa.text("relayed_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("relayed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE outbox SET relayed_at = COALESCE(processed_at, created_at)"
        " WHERE processed_at IS NOT NULL"
        " OR EXISTS (SELECT 1 FROM outbox_deliveries WHERE outbox_deliveries.event_id = outbox.event_id)"
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_unrelayed", ["id"], unique=False, sqlite_where=_UNRELAYED, postgresql_where=_UNRELAYED
        )


def downgrade() -> None:
    op.drop_index("ix_outbox_unrelayed", table_name="outbox")
    # Not a batch (copy and swap) on SQLite: outbox_deliveries' rows refer to the outbox, so
    # dropping the old table would break their foreign key. SQLite drops a column in place.
    op.execute("ALTER TABLE outbox DROP COLUMN relayed_at")
