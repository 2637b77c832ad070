"""procrastinate's job queue schema, and a NOTIFY when outbox rows are committed (PostgreSQL only)

The scale-out queue (alliance/queue, issue 9) keeps its jobs in procrastinate's own tables on the
same database; they are not Alliance models. On SQLite (the embedded default) nothing changes.

Revision ID: 0010_q9a
Revises: 0009_merge
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_q9a"
down_revision: str | Sequence[str] | None = "0009_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The relay listens on this channel (alliance.queue.relay.OUTBOX_CHANNEL); one notification per
# statement that inserted outbox rows, delivered when its transaction commits.
_NOTIFY = """
CREATE OR REPLACE FUNCTION alliance_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('alliance_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER alliance_outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION alliance_outbox_notify();
"""


def _run_script(sql: str) -> None:
    # A multi-statement script with dollar quoting and % signs: straight to psycopg, no parameters.
    driver = op.get_bind().connection.driver_connection
    driver.execute(sql)  # type: ignore[union-attr]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    from procrastinate.schema import SchemaManager

    _run_script(SchemaManager.get_schema())
    _run_script(_NOTIFY)


# Everything procrastinate's schema script installed in this schema (its objects are all named
# procrastinate_*): tables (their indexes, sequences and triggers go with them), then functions
# (trigger functions and the API functions, every signature), then the remaining types. Found in
# the catalog rather than listed here, so that objects of a newer procrastinate schema go too.
# A CASCADE may already have removed an object listed later, hence IF EXISTS.
_DROP_PROCRASTINATE = """
DO $$
DECLARE
    target text;
BEGIN
    FOR target IN
        SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname LIKE 'procrastinate\\_%'
    LOOP
        EXECUTE format('DROP TABLE IF EXISTS %s CASCADE', target);
    END LOOP;
    FOR target IN
        SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%'
    LOOP
        EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', target);
    END LOOP;
    FOR target IN
        SELECT format('%I.%I', n.nspname, t.typname) FROM pg_type t
          JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = current_schema() AND t.typtype IN ('e', 'c', 'd') AND t.typname LIKE 'procrastinate\\_%'
    LOOP
        EXECUTE format('DROP TYPE IF EXISTS %s CASCADE', target);
    END LOOP;
END
$$;
"""


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _run_script(
        """
        DROP TRIGGER IF EXISTS alliance_outbox_notify ON outbox;
        DROP FUNCTION IF EXISTS alliance_outbox_notify();
        """
    )
    _run_script(_DROP_PROCRASTINATE)
