"""merge the parallel 0008 revisions (checklists, client links, Google push, listing revision, mail, notes, video)

Revision ID: 0009_merge
Revises: 0008_checklists, 0008_client_links, 0008_google_push, 0008_listing_revision, 0008_mail, 0008_notes, 0008_video
Create Date: 2026-11-27
"""

from collections.abc import Sequence

revision: str = "0009_merge"
down_revision: str | Sequence[str] | None = (
    "0008_checklists",
    "0008_client_links",
    "0008_google_push",
    "0008_listing_revision",
    "0008_mail",
    "0008_notes",
    "0008_video",
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
