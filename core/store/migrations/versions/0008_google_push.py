"""push_channels: notification channels of connections (Google events.watch), tokens encrypted

Revision ID: 0008_google_push
Revises: 0007_connection_removed
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_google_push"
down_revision: str | Sequence[str] | None = "0007_connection_removed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "push_channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=255), nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"], ["connections.id"], name=op.f("fk_push_channels_connection_id_connections")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_channels")),
        sa.UniqueConstraint("channel_id", name=op.f("uq_push_channels_channel_id")),
    )
    with op.batch_alter_table("push_channels", schema=None) as batch_op:
        batch_op.create_index("ix_push_channels_connection", ["connection_id", "expires_at"], unique=False)


def downgrade() -> None:
    op.drop_table("push_channels")
