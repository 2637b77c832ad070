"""keyring

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("kid", sa.String(length=32), nullable=False),
        sa.Column("owner_kind", sa.String(length=20), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("parent_kid", sa.String(length=32), nullable=True),
        sa.Column("master_version", sa.Integer(), nullable=True),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["parent_kid"], ["data_keys.kid"], name=op.f("fk_data_keys_parent_kid_data_keys")),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_data_keys")),
        sa.UniqueConstraint("owner_kind", "owner_id", name=op.f("uq_data_keys_owner_kind_owner_id")),
    )
    op.create_table(
        "master_key_checks",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("probe", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_master_key_checks")),
    )


def downgrade() -> None:
    op.drop_table("master_key_checks")
    op.drop_table("data_keys")
