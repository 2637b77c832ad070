"""Fixtures of tests/portal (the web app) and tests/cli (the real ``alliance`` command) for the notes tests."""

from tests.cli.conftest import home, run
from tests.portal.conftest import anyio_backend, app, client, settings, therapist, worker

__all__ = ["anyio_backend", "app", "client", "home", "run", "settings", "therapist", "worker"]
