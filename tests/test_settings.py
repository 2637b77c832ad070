"""Settings: environment, config file, validation, production refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from alliance.settings import ConfigFileError, Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ALLIANCE_"):
            monkeypatch.delenv(name)


def test_defaults_use_the_embedded_database_in_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLIANCE_HOME", str(tmp_path))
    settings = Settings()
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'alliance.db'}"
    assert (settings.window_past_days, settings.window_future_days) == (60, 365)
    assert settings.env == "development"


def test_a_config_file_is_read_and_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "alliance.toml"
    config.write_text('timezone = "Europe/Madrid"\nwindow_future_days = 90\n')
    monkeypatch.setenv("ALLIANCE_CONFIG", str(config))
    assert (Settings().timezone, Settings().window_future_days) == ("Europe/Madrid", 90)
    monkeypatch.setenv("ALLIANCE_TIMEZONE", "America/Bogota")
    assert Settings().timezone == "America/Bogota"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('tmezone = "Europe/Madrid"\n', "unknown setting"),
        ("timezone = \n", "not valid TOML"),
    ],
)
def test_a_bad_config_file_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, message: str
) -> None:
    config = tmp_path / "alliance.toml"
    config.write_text(content)
    monkeypatch.setenv("ALLIANCE_CONFIG", str(config))
    with pytest.raises(ConfigFileError, match=message):
        Settings()


def test_a_missing_config_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLIANCE_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigFileError, match="no such file"):
        Settings()


def test_production_refuses_to_start_without_a_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLIANCE_ENV", "production")
    with pytest.raises(ValidationError, match="ALLIANCE_MASTER_KEY must be set"):
        Settings()
    monkeypatch.setenv("ALLIANCE_MASTER_KEY", "   ")
    with pytest.raises(ValidationError, match="ALLIANCE_MASTER_KEY must be set"):
        Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ALLIANCE_TIMEZONE", "Mars/Olympus"),
        ("ALLIANCE_DATABASE_URL", "mysql://localhost/x"),
        ("ALLIANCE_WINDOW_FUTURE_DAYS", "0"),
        ("ALLIANCE_ENV", "staging"),
        ("ALLIANCE_JOB_CLAIM_SECONDS", "5"),  # shorter than any handler could promise to finish in
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
