"""connections.listing_revision: a counter that changes whenever a connection's listing does

Revision ID: 0008_listing_revision
Revises: 0007_connection_removed
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_listing_revision"
down_revision: str | Sequence[str] | None = "0007_connection_removed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("listing_revision", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_column("listing_revision")
