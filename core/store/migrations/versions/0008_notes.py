"""session notes (versions, disclosures), the hash-chained audit log, data key re-keying

Revision ID: 0008_notes
Revises: 0007_connection_removed
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_notes"
down_revision: str | Sequence[str] | None = "0007_connection_removed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name=op.f("fk_notes_session_id_sessions")),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], name=op.f("fk_notes_client_id_clients")),
        sa.ForeignKeyConstraint(["author_id"], ["therapists.id"], name=op.f("fk_notes_author_id_therapists")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
    )
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notes_session_id"), ["session_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notes_client_id"), ["client_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notes_author_id"), ["author_id"], unique=False)

    op.create_table(
        "note_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("note_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["note_id"], ["notes.id"], name=op.f("fk_note_versions_note_id_notes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_note_versions")),
        sa.UniqueConstraint("note_id", "version", name=op.f("uq_note_versions_note_id_version")),
    )
    with op.batch_alter_table("note_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_note_versions_note_id"), ["note_id"], unique=False)

    op.create_table(
        "note_disclosures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("therapist_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("note_ids", sa.JSON(), nullable=False),
        sa.Column("reason", sa.LargeBinary(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["therapist_id"], ["therapists.id"], name=op.f("fk_note_disclosures_therapist_id_therapists")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_note_disclosures")),
    )
    with op.batch_alter_table("note_disclosures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_note_disclosures_therapist_id"), ["therapist_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_note_disclosures_client_id"), ["client_id"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("id", _BIGINT, nullable=False),
        sa.Column("seq", _BIGINT, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("therapist_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("target_kind", sa.String(length=20), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("client_id", sa.Integer(), nullable=True),
        sa.Column("origin", sa.String(length=120), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("seq", name=op.f("uq_audit_log_seq")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_therapist_id"), ["therapist_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_client_id"), ["client_id"], unique=False)

    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", _BIGINT, nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    # The one head row every append locks (core.audit.service).
    op.bulk_insert(head, [{"id": 1, "seq": 0, "last_hash": GENESIS}])

    op.create_table(
        "key_reencrypt_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clients_done", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_reencrypt_runs")),
    )
    # An owner may now have superseded keys next to its one current key (alliance keys reencrypt).
    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint("uq_data_keys_owner_kind_owner_id", type_="unique")
        batch_op.create_index("ix_data_keys_owner", ["owner_kind", "owner_id"], unique=False)
    op.create_index(
        "ix_data_keys_current_owner",
        "data_keys",
        ["owner_kind", "owner_id"],
        unique=True,
        sqlite_where=sa.text("superseded_at IS NULL"),
        postgresql_where=sa.text("superseded_at IS NULL"),
    )


def downgrade() -> None:
    # Refused while an owner has a superseded key: the old unique constraint could not hold.
    op.drop_index("ix_data_keys_current_owner", table_name="data_keys")
    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_data_keys_owner")
        batch_op.create_unique_constraint("uq_data_keys_owner_kind_owner_id", ["owner_kind", "owner_id"])
        batch_op.drop_column("superseded_at")
    op.drop_table("key_reencrypt_runs")
    op.drop_table("audit_head")
    op.drop_table("audit_log")
    op.drop_table("note_disclosures")
    op.drop_table("note_versions")
    op.drop_table("notes")
