"""End-to-end: the real ``gpuyard`` command in a subprocess, on a free port and a fresh data dir.

Each test starts the installed console script (or ``python -m gpuyard.cli.main``) through
``up_kit.Launcher``, waits for it by polling ``/readyz`` with a deadline, talks to it over
loopback with httpx and with the real ``curl``, and stops it.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from gpuyard.core.credentials import new_api_key
from tests import databases
from tests.cli.up_kit import (
    START_TIMEOUT_S,
    Launcher,
    assert_no_traceback,
    base_env,
    gpuyard_command,
    listening,
    me,
    wait_for_hosts,
)

pytestmark = pytest.mark.slow


# --- first and later starts ---------------------------------------------------------------------


def test_first_start_migrates_prints_the_operator_key_once_and_saves_it(
    gpuyard: Launcher, tmp_path: Path
) -> None:
    server = gpuyard()
    server.wait_ready()

    keys = server.printed_keys()
    assert len(keys) == 1, server.output()
    key = keys[0]
    key_file = server.data_dir / "admin-key"
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700

    r = me(server, key)
    assert r.status_code == 200, r.text
    assert r.json()["scopes"] == ["operator"]
    assert r.json()["org"]["is_operator"] is True
    assert httpx.get(f"{server.base_url}/healthz", timeout=10).status_code == 200
    ready = httpx.get(f"{server.base_url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["schema_revision"] == ready.json()["expected_revision"] is not None
    assert me(server, new_api_key()).status_code == 401


def test_the_printed_curl_hint_works_with_the_real_curl(gpuyard: Launcher) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    server = gpuyard()
    server.wait_ready()

    # The hint the command prints, run as printed: curl -H "Authorization: Bearer $(cat …)" …/v1/me
    hints = [line for line in server.stderr.splitlines() if line.startswith("Try: curl ")]
    assert len(hints) == 1, server.output()
    done = subprocess.run(
        ["sh", "-c", hints[0].removeprefix("Try: ") + " --silent --show-error --fail"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b'"is_operator":true' in done.stdout

    done = subprocess.run(
        [curl, "--silent", "--show-error", "--include", f"{server.base_url}/readyz"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    head, _, body = done.stdout.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200"), done.stdout
    assert "x-request-id:" in head.lower()
    assert '"status":"ready"' in body

    done = subprocess.run(
        [
            curl,
            "--silent",
            "--write-out",
            "%{http_code}",
            "--output",
            "/dev/null",
            "-H",
            "Authorization: Bearer nope",
            f"{server.base_url}/v1/me",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.stdout == b"401"


def test_second_start_keeps_the_key_and_prints_none(gpuyard: Launcher) -> None:
    first = gpuyard()
    first.wait_ready()
    (key,) = first.printed_keys()
    assert first.interrupt() == 0, first.output()

    second = gpuyard()
    second.wait_ready()
    assert second.printed_keys() == [], second.output()
    assert key not in second.stdout + second.stderr
    assert str(second.data_dir / "admin-key") in second.stderr
    assert (second.data_dir / "admin-key").read_text().strip() == key
    assert me(second, key).status_code == 200


def test_up_runs_a_local_agent_that_keeps_its_host_across_restarts(gpuyard: Launcher) -> None:
    """Each start listens on another free port: the agent's registration follows the server."""
    first = gpuyard("--gpus", "RTX 4090:2")
    first.wait_ready()
    (key,) = first.printed_keys()
    (host,) = wait_for_hosts(first, key, 1)
    assert host["gpus"], host
    assert first.interrupt() == 0, first.output()
    assert_no_traceback(first)

    second = gpuyard("--gpus", "RTX 4090:2")
    second.wait_ready()
    hosts = wait_for_hosts(second, key, 1)
    assert [h["id"] for h in hosts] == [host["id"]]  # the agent kept its credential
    assert second.interrupt() == 0, second.output()
    assert_no_traceback(second)


# --- GPUYARD_ADMIN_KEY --------------------------------------------------------------------------


def test_admin_key_from_the_environment_becomes_the_operator_key(gpuyard: Launcher) -> None:
    chosen = new_api_key()
    server = gpuyard(env={"GPUYARD_ADMIN_KEY": chosen})
    server.wait_ready()

    r = me(server, chosen)
    assert r.status_code == 200, r.text
    assert r.json()["scopes"] == ["operator"]
    assert server.printed_keys() == [], server.output()
    assert chosen not in server.stdout + server.stderr  # a secret the user chose is never echoed
    assert "GPUYARD_ADMIN_KEY" in server.stderr


def test_admin_key_set_on_a_later_start_is_added_beside_the_first(gpuyard: Launcher) -> None:
    first = gpuyard()
    first.wait_ready()
    (generated,) = first.printed_keys()
    assert first.interrupt() == 0, first.output()

    chosen = new_api_key()
    second = gpuyard(env={"GPUYARD_ADMIN_KEY": chosen})
    second.wait_ready()
    assert me(second, chosen).status_code == 200
    assert me(second, generated).status_code == 200
    assert me(second, chosen).json()["org_id"] == me(second, generated).json()["org_id"]


@pytest.mark.parametrize("value", ["hello", "vl_short", "vl_" + "!" * 43])
def test_malformed_admin_key_stops_before_serving(gpuyard: Launcher, value: str) -> None:
    server = gpuyard(env={"GPUYARD_ADMIN_KEY": value})
    code = server.wait_exit(timeout_s=START_TIMEOUT_S)
    assert code != 0, server.output()
    assert "GPUYARD_ADMIN_KEY" in server.stderr, server.output()
    assert_no_traceback(server)
    assert not listening(server.port)
    assert not (server.data_dir / "admin-key").exists()


# --- Postgres -----------------------------------------------------------------------------------


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A new, empty (unmigrated) Postgres database, dropped afterwards."""
    problem = databases.run(databases.postgres_available())
    if problem is not None:
        if os.environ.get("GPUYARD_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"Postgres is required (GPUYARD_TEST_REQUIRE_POSTGRES=1) but: {problem}")
        pytest.skip(f"no Postgres at {databases.admin_pg_url()}: {problem}")
    name = f"gpuyard_cli_{os.getpid()}_{os.urandom(3).hex()}"
    admin = databases.admin_pg_url()
    databases.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
    url = f"{admin.rpartition('/')[0]}/{name}"
    try:
        yield url
    finally:
        databases.run(databases.drop_pg_database(url))


async def _pg_execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _pg_fetchval(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@pytest.mark.postgres
def test_server_on_postgres_migrates_and_is_ready(
    gpuyard: Launcher, empty_pg_url: str, tmp_path: Path
) -> None:
    server = gpuyard(command="server", env={"GPUYARD_DATABASE_URL": empty_pg_url})
    server.wait_ready()

    ready = httpx.get(f"{server.base_url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["schema_revision"] == ready.json()["expected_revision"] is not None
    (key,) = server.printed_keys()
    assert me(server, key).status_code == 200
    r = httpx.get(
        f"{server.base_url}/v1/admin/hosts", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert r.json()["data"] == []  # a control-plane replica runs no agent
    (shown,) = [line for line in server.stderr.splitlines() if "(database: " in line]
    assert "postgres@" not in shown  # the database is named without its credentials
    assert not (tmp_path / "data" / "gpuyard.db").exists()


@pytest.mark.postgres
def test_two_servers_starting_together_on_an_empty_database_both_come_up(
    gpuyard: Launcher, empty_pg_url: str, tmp_path: Path
) -> None:
    env = {"GPUYARD_DATABASE_URL": empty_pg_url}
    a = gpuyard(command="server", env=env, data_dir=tmp_path / "a")
    b = gpuyard(command="server", env=env, data_dir=tmp_path / "b")
    a.wait_ready()
    b.wait_ready()

    for server in (a, b):
        ready = httpx.get(f"{server.base_url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
    operators = databases.run(
        _pg_fetchval(empty_pg_url, "SELECT count(*) FROM orgs WHERE is_operator")
    )
    assert operators == 1
    keys = a.printed_keys() + b.printed_keys()
    assert len(keys) == 1, a.output() + b.output()
    assert me(a, keys[0]).status_code == 200
    assert me(b, keys[0]).status_code == 200
    assert_no_traceback(a)
    assert_no_traceback(b)


# --- help ---------------------------------------------------------------------------------------


def _run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*gpuyard_command(), *args],
        capture_output=True,
        text=True,
        env=base_env(home),
        timeout=60,
        check=False,
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    done = _run_cli("--help", home=tmp_path)
    assert done.returncode == 0, done.stderr
    for command in ("up", "server", "version"):
        assert re.search(rf"\b{command}\b", done.stdout), done.stdout


@pytest.mark.parametrize("command", ["up", "server"])
def test_command_help_names_port_and_data_dir(tmp_path: Path, command: str) -> None:
    done = _run_cli(command, "--help", home=tmp_path)
    assert done.returncode == 0, done.stderr
    for option in ("--port", "--data-dir", "--host"):
        assert option in done.stdout, done.stdout
    assert not (tmp_path / ".gpuyard").exists()  # asking for help creates nothing
