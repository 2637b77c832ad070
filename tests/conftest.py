"""Shared fixtures: a migrated store on SQLite always, and on PostgreSQL when one answers.

Under ``CI=true`` PostgreSQL is required: its absence fails the run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.crypto import Keyring, MasterKeys, generate_key_text
from core.store import Store, upgrade
from core.store.db import make_engine
from core.store.schema import metadata

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# One master key per test run; every store the fixtures open encrypts with it.
TEST_MASTER_KEY = generate_key_text()


def test_keyring() -> Keyring:
    """A fresh keyring (empty caches) on the test run's master key."""
    return Keyring(MasterKeys.from_env_value(TEST_MASTER_KEY))


test_keyring.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test

DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _pg_admin_url() -> str:
    return os.environ.get("ALLIANCE_TEST_POSTGRES_URL", DEFAULT_PG_ADMIN_URL)


def _pg_reachable(url: str) -> str | None:
    """None when PostgreSQL answers at ``url``, else the reason it does not."""
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure means "not reachable"; the reason is reported
        return f"{type(exc).__name__}: {exc}".splitlines()[0]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating every test would be slow)."""
    path = tmp_path_factory.mktemp("template") / "alliance.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:  # fold the WAL into the main file before copying it
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh, migrated PostgreSQL database for this test run, dropped afterwards."""
    admin_url = _pg_admin_url()
    reason = _pg_reachable(admin_url)
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true but {admin_url} failed: {reason}")
        pytest.skip(f"no PostgreSQL at {admin_url} ({reason}); set ALLIANCE_TEST_POSTGRES_URL")
    name = f"alliance_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _truncate_all(store: Store) -> None:
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with store.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def clean_postgres_url(postgres_url: str) -> str:
    """The test run's PostgreSQL database, emptied (for tests that open it themselves)."""
    s = Store(make_engine(postgres_url))
    _truncate_all(s)
    s.close()
    return postgres_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty store; every store test runs on both databases."""
    if request.param == "sqlite":
        path = tmp_path / "alliance.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        s = Store(make_engine(f"sqlite:///{path}"), keyring=test_keyring())
    else:
        s = Store(make_engine(request.getfixturevalue("postgres_url")), keyring=test_keyring())
        _truncate_all(s)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path, sqlite_template: Path) -> Iterator[Store]:
    """SQLite only, for tests about the embedded default itself."""
    path = tmp_path / "alliance.db"
    shutil.copy(sqlite_template, path)
    s = Store(make_engine(f"sqlite:///{path}"), keyring=test_keyring())
    yield s
    s.close()
