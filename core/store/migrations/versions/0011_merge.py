"""merge the parallel 0010 revisions (client-link details, push pauses, procrastinate's schema, sync backoff)

Revision ID: 0011_merge
Revises: 0010_i7, 0010_push_pauses, 0010_q9a, 0010_q9b
Create Date: 2026-11-27
"""

from collections.abc import Sequence

revision: str = "0011_merge"
down_revision: str | Sequence[str] | None = (
    "0010_i7",
    "0010_push_pauses",
    "0010_q9a",
    "0010_q9b",
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
