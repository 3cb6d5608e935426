"""The data dir is 0700 and the SQLite database with its -wal and -shm files 0600, whatever the
umask; a wider mode left by an older start or by hand is tightened with a warning. And the
operator key chosen in the environment or a file is checked before anything starts."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from gpuyard.core.credentials import new_api_key
from gpuyard.server import operator_key
from gpuyard.server.data_dir import private_dir, private_sqlite_files, sqlite_file
from gpuyard.server.db import create_engine
from gpuyard.server.settings import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _mode_if_any(path: Path) -> int | None:
    return mode(path) if path.exists() else None


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The umask many systems have (022): new files readable by everyone unless made private."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_data_dir_is_private(tmp_path: Path, open_umask: None) -> None:
    private_dir(tmp_path / "a" / "data")
    assert mode(tmp_path / "a" / "data") == 0o700


def test_an_open_data_dir_is_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    with caplog.at_level(logging.WARNING):
        private_dir(data)
    assert mode(data) == 0o700
    assert f"the data dir {data} could be read by other users (mode 0755)" in caplog.text

    caplog.clear()
    private_dir(data)
    assert not caplog.text  # a private dir is left alone, quietly


async def test_sqlite_makes_its_wal_and_shm_as_private_as_the_database(
    tmp_path: Path, open_umask: None
) -> None:
    database = tmp_path / "gpuyard.db"
    url = f"sqlite+aiosqlite:///{database}"
    assert sqlite_file(url) == database
    private_sqlite_files(database)
    assert database.exists() and mode(database) == 0o600

    engine = create_engine(url)
    try:
        async with engine.begin() as conn:  # WAL mode (db.py): -wal and -shm appear
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        modes = {suffix: _mode_if_any(Path(f"{database}{suffix}")) for suffix in ("-wal", "-shm")}
        assert modes == {"-wal": 0o600, "-shm": 0o600}, modes
    finally:
        await engine.dispose()


def test_open_database_files_are_tightened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "gpuyard.db"
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        path.write_bytes(b"")
        path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        private_sqlite_files(database)
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        assert mode(path) == 0o600
    assert caplog.text.count("could be read by other users (mode 0644)") == 3


@pytest.mark.parametrize(
    "url",
    ["postgresql+asyncpg://u@h/db", "sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:", "x"],
)
def test_only_a_sqlite_file_is_a_database_file(url: str) -> None:
    assert sqlite_file(url) is None


# --- the operator key ---------------------------------------------------------------------------


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_no_chosen_key_is_none(tmp_path: Path) -> None:
    assert operator_key.chosen_key(settings(tmp_path)) is None


def test_a_key_file_holds_the_key_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = new_api_key()
    path = tmp_path / "key"
    path.write_text(f"\n{key}\n\n")
    path.chmod(0o600)
    assert operator_key.chosen_key(settings(tmp_path, admin_key_file=path)) == key
    assert not caplog.text

    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        operator_key.chosen_key(settings(tmp_path, admin_key_file=path))
    assert "can be read by other users (mode 0644)" in caplog.text

    path.write_text(f"{key}\n{key}\n")
    with pytest.raises(operator_key.OperatorKeyError, match="alone on one line"):
        operator_key.chosen_key(settings(tmp_path, admin_key_file=path))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"admin_key": "vl_short"}, "GPUYARD_ADMIN_KEY must look like a real key"),
        ({"admin_key": "vl_" + "ab" * 30}, "GPUYARD_ADMIN_KEY is too weak"),
        ({"admin_key": new_api_key(), "admin_key_file": "/x"}, "not both"),
        ({"admin_key_file": "/nonexistent/key"}, "GPUYARD_ADMIN_KEY_FILE: cannot read"),
    ],
)
def test_a_bad_choice_is_refused_with_the_setting_named(
    tmp_path: Path, values: dict[str, object], message: str
) -> None:
    with pytest.raises(operator_key.OperatorKeyError, match=message) as refused:
        operator_key.chosen_key(settings(tmp_path, **values))
    key = values.get("admin_key")
    assert not isinstance(key, str) or key not in str(refused.value)


def test_clearing_the_environment_removes_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process: the variables leave ``os.environ`` (and so every child's environment).
    The start-up block /proc shows is checked on a real server (tests/cli/test_secrets.py)."""
    monkeypatch.setenv("GPUYARD_ADMIN_KEY", new_api_key())
    monkeypatch.setenv("GPUYARD_ADMIN_KEY_FILE", "/somewhere")
    operator_key.clear_environment()
    assert "GPUYARD_ADMIN_KEY" not in os.environ
    assert "GPUYARD_ADMIN_KEY_FILE" not in os.environ
