"""Fixtures of CLI tests: a fresh ALLIANCE_HOME and a runner of the real ``alliance`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import Run


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def run(home: Path) -> Run:
    def _run(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
        full_env.update({"ALLIANCE_HOME": str(home), "ALLIANCE_TIMEZONE": "Europe/Madrid", "COLUMNS": "200"})
        full_env.update(env or {})
        result = subprocess.run(
            [sys.executable, "-m", "alliance", *args], capture_output=True, text=True, env=full_env, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"alliance {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    return _run
