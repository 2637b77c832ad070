"""procrastinate's fetch walks its priority index in order, whatever the statistics say

``procrastinate_fetch_job_v2`` takes the first fetchable waiting job by ``ORDER BY priority DESC,
id ASC LIMIT 1``. With statistics taken when few jobs were waiting (a worker starts on a quiet
table, then a burst of syncs arrives), the planner expects one waiting row and plans a bitmap scan
of *every* waiting job, the lock check for each, and a sort: each fetch then costs O(backlog).
Measured in the load storm (500 calendars, auto_explain): 2-8 ms and 2,000-10,000 buffers per
fetch with 1,000-3,500 jobs waiting, against 0.4 ms and ~40 buffers for the ordered walk that
other workers' sessions, planned at another moment, used in the same run; fetches were ~70 % of
PostgreSQL's CPU. Sorting is switched off for that function only (a setting attached to the
function, its body untouched), which leaves the planner the ordered walk of
``procrastinate_jobs_priority_idx_v1``: it stops at the first job it can take.

Should a procrastinate upgrade replace the function, the setting goes with the old body and the
fetch is as before (slower under a backlog, never wrong).

Revision ID: 0014_fetch_plan
Revises: 0013_queue_lock_index
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_fetch_plan"
down_revision: str | Sequence[str] | None = "0013_queue_lock_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FETCH = "procrastinate_fetch_job_v2(character varying[], bigint)"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # procrastinate's tables exist on PostgreSQL only (0010_q9a)
    op.execute(f"ALTER FUNCTION {FETCH} SET enable_sort = off")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER FUNCTION {FETCH} RESET enable_sort")
