"""video: video connections, session video links, per-host daily budget, call events (Zoom webhooks)

Revision ID: 0008_video
Revises: 0007_connection_removed
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_video"
down_revision: str | Sequence[str] | None = "0007_connection_removed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "video_call_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("event", sa.String(length=60), nullable=False),
        sa.Column("meeting_id", sa.String(length=64), nullable=False),
        sa.Column("meeting_uuid", sa.String(length=128), nullable=False),
        sa.Column("event_ts", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_video_call_events")),
        sa.UniqueConstraint(
            "provider",
            "event",
            "meeting_uuid",
            "event_ts",
            name=op.f("uq_video_call_events_provider_event_meeting_uuid_event_ts"),
        ),
    )
    with op.batch_alter_table("video_call_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_video_call_events_meeting_id"), ["meeting_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_video_call_events_processed_at"), ["processed_at"], unique=False)

    op.create_table(
        "video_connections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("therapist_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("credentials", sa.LargeBinary(), nullable=False),
        sa.Column("health", sa.String(length=20), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["therapist_id"], ["therapists.id"], name=op.f("fk_video_connections_therapist_id_therapists")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_video_connections")),
        sa.UniqueConstraint("therapist_id", name=op.f("uq_video_connections_therapist_id")),
    )
    op.create_table(
        "video_host_budget",
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["video_connections.id"],
            name=op.f("fk_video_host_budget_connection_id_video_connections"),
        ),
        sa.PrimaryKeyConstraint("connection_id", "day", name=op.f("pk_video_host_budget")),
    )
    op.create_table(
        "session_videos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("meeting_id", sa.String(length=64), nullable=True),
        sa.Column("join_url", sa.LargeBinary(), nullable=True),
        sa.Column("meeting_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("meeting_minutes", sa.Integer(), nullable=True),
        sa.Column("marker", sa.String(length=64), nullable=True),
        sa.Column("create_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("call_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("call_ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("host_joined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("host_left_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("client_joined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("client_left_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name=op.f("fk_session_videos_session_id_sessions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_videos")),
        sa.UniqueConstraint("marker", name=op.f("uq_session_videos_marker")),
        sa.UniqueConstraint("session_id", name=op.f("uq_session_videos_session_id")),
    )
    with op.batch_alter_table("session_videos", schema=None) as batch_op:
        batch_op.create_index("ix_session_videos_due", ["next_attempt_at"], unique=False)
        batch_op.create_index("ix_session_videos_meeting", ["provider", "meeting_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("session_videos", schema=None) as batch_op:
        batch_op.drop_index("ix_session_videos_meeting")
        batch_op.drop_index("ix_session_videos_due")

    op.drop_table("session_videos")
    op.drop_table("video_host_budget")
    op.drop_table("video_connections")
    with op.batch_alter_table("video_call_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_video_call_events_processed_at"))
        batch_op.drop_index(batch_op.f("ix_video_call_events_meeting_id"))

    op.drop_table("video_call_events")
