"""checklist templates (versioned per therapist), runs per session and list, append-only answers

Revision ID: 0008_checklists
Revises: 0007_connection_removed
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_checklists"
down_revision: str | Sequence[str] | None = "0007_connection_removed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "checklist_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("therapist_id", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=10), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["therapist_id"], ["therapists.id"], name=op.f("fk_checklist_templates_therapist_id_therapists")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checklist_templates")),
        sa.UniqueConstraint(
            "therapist_id", "phase", "version", name=op.f("uq_checklist_templates_therapist_id_phase_version")
        ),
    )
    with op.batch_alter_table("checklist_templates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_checklist_templates_therapist_id"), ["therapist_id"], unique=False)

    op.create_table(
        "checklist_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=10), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("started_by", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name=op.f("fk_checklist_runs_session_id_sessions")),
        sa.ForeignKeyConstraint(
            ["started_by"], ["therapists.id"], name=op.f("fk_checklist_runs_started_by_therapists")
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["checklist_templates.id"],
            name=op.f("fk_checklist_runs_template_id_checklist_templates"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checklist_runs")),
        sa.UniqueConstraint("session_id", "phase", name=op.f("uq_checklist_runs_session_id_phase")),
    )
    with op.batch_alter_table("checklist_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_checklist_runs_session_id"), ["session_id"], unique=False)

    op.create_table(
        "checklist_answers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("item_key", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("detail", sa.LargeBinary(), nullable=True),
        sa.Column("answered_by", sa.Integer(), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["answered_by"], ["therapists.id"], name=op.f("fk_checklist_answers_answered_by_therapists")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["checklist_runs.id"], name=op.f("fk_checklist_answers_run_id_checklist_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checklist_answers")),
    )
    with op.batch_alter_table("checklist_answers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_checklist_answers_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("checklist_answers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checklist_answers_run_id"))
    op.drop_table("checklist_answers")
    with op.batch_alter_table("checklist_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checklist_runs_session_id"))
    op.drop_table("checklist_runs")
    with op.batch_alter_table("checklist_templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checklist_templates_therapist_id"))
    op.drop_table("checklist_templates")
