"""merge accounts, clients and jobs

Revision ID: 0006_merge
Revises: 0003_accounts, 0004_clients, 0005_jobs
Create Date: 2026-11-26
"""

from collections.abc import Sequence

revision: str = "0006_merge"
down_revision: str | Sequence[str] | None = ("0003_accounts", "0004_clients", "0005_jobs")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
