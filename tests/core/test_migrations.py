"""The migrations build exactly the tables the models describe (on both databases)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from core.store import Store
from core.store.schema import metadata


def test_the_migrated_schema_matches_the_models(store: Store) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    # Procrastinate or other tools may later own tables of their own: only ours are compared.
    ours = [
        d
        for d in differences
        if not (d[0] == "remove_table" and d[1].name not in metadata.tables)
        and not (d[0] == "remove_index" and d[1].table.name not in metadata.tables)
    ]
    assert ours == []
