"""Migration 0010_q9a on PostgreSQL: downgrade removes procrastinate's schema, upgrade brings it back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from core.store.db import alembic_config, make_engine

pytestmark = pytest.mark.postgres

# Every object in the schema that procrastinate (or our outbox NOTIFY) installed, by kind.
_OBJECTS = text(
    """
    SELECT 'relation', relname FROM pg_class
     WHERE relnamespace = current_schema()::regnamespace AND relname LIKE '%procrastinate%'
    UNION ALL
    SELECT 'function', proname FROM pg_proc
     WHERE pronamespace = current_schema()::regnamespace
       AND (proname LIKE '%procrastinate%' OR proname = 'alliance_outbox_notify')
    UNION ALL
    SELECT 'type', typname FROM pg_type
     WHERE typnamespace = current_schema()::regnamespace AND typname LIKE '%procrastinate%'
    UNION ALL
    SELECT 'trigger', tgname FROM pg_trigger WHERE tgname = 'alliance_outbox_notify'
    """
)


@pytest.fixture
def scratch(postgres_url: str) -> Iterator[Engine]:
    """An empty database of its own: migrations run from nothing, the test run's database stays."""
    name = f"alliance_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(postgres_url).set(database=name).render_as_string(hide_password=False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _objects(engine: Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return {(kind, name) for kind, name in conn.execute(_OBJECTS)}


def test_downgrade_below_0010_q9a_leaves_no_procrastinate_object_and_upgrade_installs_it_again(
    scratch: Engine,
) -> None:
    config = alembic_config(scratch)
    command.upgrade(config, "heads")
    installed = _objects(scratch)
    kinds = {kind for kind, _ in installed}
    assert {"relation", "function", "type", "trigger"} <= kinds
    assert ("relation", "procrastinate_jobs") in installed and ("function", "procrastinate_fetch_job_v2") in installed

    command.downgrade(config, "0009_merge")
    assert _objects(scratch) == set()
    with scratch.connect() as conn:  # the rest of the schema is still there: 0009's tables
        assert conn.execute(text("SELECT count(*) FROM outbox")).scalar() == 0

    command.upgrade(config, "heads")
    assert _objects(scratch) == installed
    with scratch.begin() as conn:  # and procrastinate works again: a job can be deferred
        conn.execute(
            text(
                "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('default', 'sync.connection', 0, NULL, NULL,"
                " '{}'::jsonb, NULL)::procrastinate_job_to_defer_v1])"
            )
        )
        assert conn.execute(text("SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'")).scalar() == 1


def test_a_waiting_jobs_lock_is_looked_up_through_its_own_index(scratch: Engine) -> None:
    """procrastinate's fetch checks, for every candidate job, whether a job with the same lock is
    running or waiting ahead of it. Without an index on the lock, each check read the whole
    (id, lock) index: with a backlog of 11,000 jobs one fetch took 1.6 s (migration 0013)."""
    command.upgrade(alembic_config(scratch), "heads")
    with scratch.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status)"
                " SELECT 'default', 'outbox.deliver', 'delivery:' || n, '{}'::jsonb, 'todo'"
                " FROM generate_series(1, 3000) AS n"
            )
        )
        conn.execute(text("ANALYZE procrastinate_jobs"))
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                text("EXPLAIN SELECT 1 FROM procrastinate_jobs WHERE lock = 'delivery:7' AND status = 'todo'")
            )
        )
    assert "alliance_procrastinate_jobs_lock_waiting" in plan, plan
