"""Fixtures of the Outlook provider tests: the emulator (one per module, reset per test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.outlook import OutlookState, RunningEmulator, run_outlook_emulator
from tests.integrations.outlook.world import OutlookWorld


@pytest.fixture(scope="module")
def outlook_emulator() -> Iterator[RunningEmulator]:
    with run_outlook_emulator(OutlookState(seed=11)) as emu:
        yield emu


@pytest.fixture
def outlook(outlook_emulator: RunningEmulator) -> OutlookWorld:
    world = OutlookWorld(outlook_emulator)
    world.reset()
    return world
