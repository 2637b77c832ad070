"""push_channels.last_message_number: the highest push message number acted on, per channel

Revision ID: 0012_q9e
Revises: 0011_merge
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_q9e"
down_revision: str | Sequence[str] | None = "0011_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("push_channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_message_number", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("push_channels", schema=None) as batch_op:
        batch_op.drop_column("last_message_number")
