"""The default database is in SLOTPOOL_DATA_DIR; one an older version left in the default data
directory is still used (and named, so the server warns) until it is moved."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotpool.settings import Settings


@pytest.fixture
def home_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's data directory (the default SLOTPOOL_DATA_DIR's parent), empty."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "slotpool"


def test_the_default_database_is_in_the_data_directory(home_data: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    default = Settings()

    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'slotpool.db'}"
    assert default.database_url == f"sqlite:///{home_data / 'slotpool.db'}"
    assert settings.older_database() is None


def test_a_database_an_older_version_left_outside_the_data_directory_is_still_used(
    home_data: Path, tmp_path: Path
) -> None:
    home_data.mkdir(parents=True)
    (home_data / "slotpool.db").write_bytes(b"")

    kept = Settings(data_dir=tmp_path / "data")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "slotpool.db").write_bytes(b"")
    moved = Settings(data_dir=tmp_path / "data")

    assert kept.database_url == f"sqlite:///{home_data / 'slotpool.db'}"
    assert kept.older_database() == home_data / "slotpool.db"
    assert moved.database_url == f"sqlite:///{tmp_path / 'data' / 'slotpool.db'}"
    assert moved.older_database() is None


def test_a_database_url_given_is_used_as_is(home_data: Path, tmp_path: Path) -> None:
    url = "postgresql://slotpool@db/slotpool"
    assert Settings(data_dir=tmp_path, database_url=url).database_url == url
