"""The data dir and the SQLite database are private to the user who runs gpuyard.

The data dir holds the database (every organization's rows, clusters' environment secrets, key
hashes), the operator key file and the local agent's credential. It is created with mode 0700;
one found open to other users is tightened to 0700, with a warning.

The SQLite database file is created with mode 0600 before SQLite first opens it, and SQLite gives
the ``-wal``, ``-shm`` and ``-journal`` files it makes beside it the database file's own mode. A
database or companion file found open to other users is tightened to 0600, with a warning.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) as 0700, or tighten an existing one to 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    _tighten(path, DIR_MODE, "data dir")


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for another database or an in-memory one."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or parsed.query.get("mode") == "memory":
        return None
    return Path(database)


def private_sqlite_files(database: Path) -> None:
    """Create ``database`` empty as 0600 when it does not exist yet (an empty file is an empty
    SQLite database), and tighten it and its companion files to 0600 when they exist."""
    if not database.exists() and database.parent.is_dir():
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    for path in (database, *(Path(f"{database}{suffix}") for suffix in SQLITE_COMPANIONS)):
        if path.exists():
            _tighten(path, FILE_MODE, "database file")


def _tighten(path: Path, mode: int, what: str) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if not current & ~mode & 0o777:
        return
    try:
        path.chmod(current & mode)
    except OSError as exc:
        log.warning(
            "the %s %s can be read by other users (mode %04o) and could not be made private: %s",
            what,
            path,
            current,
            exc,
        )
        return
    log.warning(
        "the %s %s could be read by other users (mode %04o); it is now %04o",
        what,
        path,
        current,
        current & mode,
    )
