"""declined ratings and who cancelled a session (issue 7: alert rules R6 and R8)

Revision ID: 0010_i7
Revises: 0009_merge
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_i7"
down_revision: str | Sequence[str] | None = "0009_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def upgrade() -> None:
    op.create_table(
        "rating_declines",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("declined_at", _TS, nullable=False),
        _fk("rating_declines", "session_id", "sessions"),
        _fk("rating_declines", "client_id", "clients"),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_rating_declines")),
    )
    with op.batch_alter_table("rating_declines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rating_declines_client_id"), ["client_id"], unique=False)
    op.create_table(
        "session_cancellations",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("cancelled_by", sa.String(length=20), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", _TS, nullable=False),
        _fk("session_cancellations", "session_id", "sessions"),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_session_cancellations")),
    )


def downgrade() -> None:
    op.drop_table("session_cancellations")
    with op.batch_alter_table("rating_declines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rating_declines_client_id"))
    op.drop_table("rating_declines")
