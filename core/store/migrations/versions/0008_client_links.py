"""client links, join clicks, client check-ins, contact lines, call ends, ratings, licensed measure text

Revision ID: 0008_client_links
Revises: 0007_connection_removed
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_client_links"
down_revision: str | Sequence[str] | None = "0007_connection_removed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def upgrade() -> None:
    op.create_table(
        "client_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("issued_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        _fk("client_links", "session_id", "sessions"),
        _fk("client_links", "client_id", "clients"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_links")),
        sa.UniqueConstraint("session_id", name=op.f("uq_client_links_session_id")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_client_links_token_hash")),
    )
    with op.batch_alter_table("client_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_client_links_client_id"), ["client_id"], unique=False)

    op.create_table(
        "client_join_clicks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("clicked_at", _TS, nullable=False),
        _fk("client_join_clicks", "session_id", "sessions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_join_clicks")),
    )
    with op.batch_alter_table("client_join_clicks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_client_join_clicks_session_id"), ["session_id"], unique=False)

    op.create_table(
        "client_checkins",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("answers", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _fk("client_checkins", "session_id", "sessions"),
        _fk("client_checkins", "client_id", "clients"),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_client_checkins")),
    )
    with op.batch_alter_table("client_checkins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_client_checkins_client_id"), ["client_id"], unique=False)

    op.create_table(
        "therapist_contacts",
        sa.Column("therapist_id", sa.Integer(), nullable=False),
        sa.Column("contact_line", sa.Text(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _fk("therapist_contacts", "therapist_id", "therapists"),
        sa.PrimaryKeyConstraint("therapist_id", name=op.f("pk_therapist_contacts")),
    )

    op.create_table(
        "session_ends",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("ended_at", _TS, nullable=True),
        sa.Column("no_show", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", _TS, nullable=False),
        _fk("session_ends", "session_id", "sessions"),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_session_ends")),
    )

    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("measure", sa.String(length=20), nullable=False),
        sa.Column("submitted_at", _TS, nullable=False),
        sa.Column("bond", sa.Float(), nullable=False),
        sa.Column("goals", sa.Float(), nullable=False),
        sa.Column("approach", sa.Float(), nullable=False),
        sa.Column("overall", sa.Float(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("comment", sa.LargeBinary(), nullable=True),
        _fk("ratings", "session_id", "sessions"),
        _fk("ratings", "client_id", "clients"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ratings")),
        sa.UniqueConstraint("session_id", name=op.f("uq_ratings_session_id")),
    )
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ratings_client_id"), ["client_id"], unique=False)

    op.create_table(
        "measure_texts",
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("copyright_line", sa.Text(), nullable=False),
        sa.Column("locales", sa.JSON(), nullable=False),
        sa.Column("attested_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_measure_texts")),
    )


def downgrade() -> None:
    op.drop_table("measure_texts")
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ratings_client_id"))
    op.drop_table("ratings")
    op.drop_table("session_ends")
    op.drop_table("therapist_contacts")
    with op.batch_alter_table("client_checkins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_client_checkins_client_id"))
    op.drop_table("client_checkins")
    with op.batch_alter_table("client_join_clicks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_client_join_clicks_session_id"))
    op.drop_table("client_join_clicks")
    with op.batch_alter_table("client_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_client_links_client_id"))
    op.drop_table("client_links")
