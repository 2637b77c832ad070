"""An index on procrastinate_jobs.lock for waiting jobs, so that a backlog does not stall the workers

procrastinate's ``procrastinate_fetch_job_v2`` skips a job when another job with the same lock
is running or waiting ahead of it: a ``NOT EXISTS`` over ``lock = jobs.lock``. Its own indexes
lead with the id or the status, not the lock, so each check read the whole ``(id, lock)`` index;
when the planner, misled by statistics taken while the table was small, checked every waiting
job (it does under a generic plan), one fetch cost O(jobs²): 1.6 s with 11,000 jobs waiting,
and one worker then ran ~1.5 jobs a second (benchmarks/README.md, load storm, session 6). With
this index each check is one lookup: 23 ms for the same fetch under the same bad plan.

Revision ID: 0013_queue_lock_index
Revises: 0012_q9e
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013_queue_lock_index"
down_revision: str | Sequence[str] | None = "0012_q9e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "alliance_procrastinate_jobs_lock_waiting"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # procrastinate's tables exist on PostgreSQL only (0010_q9a)
    op.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON procrastinate_jobs (lock) WHERE status IN ('todo', 'doing')")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP INDEX IF EXISTS {INDEX}")
