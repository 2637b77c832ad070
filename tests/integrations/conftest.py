"""Fixtures of the integration tests: the Google emulator (one per module, reset per test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.google import GoogleState, RunningEmulator, run_google_emulator
from tests.integrations.google_world import MADRID, GoogleWorld


@pytest.fixture(scope="module")
def google_emulator() -> Iterator[RunningEmulator]:
    with run_google_emulator(GoogleState(time_zone=MADRID, seed=11)) as emu:
        yield emu


@pytest.fixture
def google(google_emulator: RunningEmulator) -> GoogleWorld:
    world = GoogleWorld(google_emulator)
    world.reset()
    return world
