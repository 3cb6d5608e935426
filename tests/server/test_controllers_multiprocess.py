"""Two real ``gpuyard server`` processes on one Postgres run the key-expiry controller at once:
every row is processed by exactly one of them, and each expired key gets exactly one event."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from gpuyard.core.credentials import new_api_key
from gpuyard.server import orm
from gpuyard.server.db import create_engine, session_factory
from tests import databases
from tests.server.key_load import expire_keys, seed_keys

pytestmark = pytest.mark.slow
KEYS = 1500


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    problem = databases.run(databases.postgres_available())
    if problem is not None:
        if os.environ.get("GPUYARD_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"Postgres is required but: {problem}")
        pytest.skip(f"no Postgres: {problem}")
    url = databases.run(databases.create_pg_database())
    yield url
    databases.run(databases.drop_pg_database(url))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(url: str, admin_key: str, port: int, tmp: Path) -> subprocess.Popen[str]:
    """``gpuyard server`` on ``port``; its output goes to ``tmp/output.log`` (a pipe nobody
    reads until the end would fill and stall it)."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = os.environ | {
        "GPUYARD_DATABASE_URL": url,
        "GPUYARD_ADMIN_KEY": admin_key,
        "GPUYARD_CONTROLLER_POLL_SECONDS": "0.05",
        "GPUYARD_DATA_DIR": str(tmp),
    }
    with (tmp / "output.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "gpuyard.cli.main", "server", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )


def server_outputs(tmp: Path) -> list[str]:
    return [log.read_text() for log in sorted(tmp.glob("*/output.log"))]


async def wait_ready(port: int, proc: subprocess.Popen[str]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            assert proc.poll() is None, f"server on port {port} exited"
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("server did not become ready")


@pytest.fixture
async def two_servers(fresh_pg: str, tmp_path) -> AsyncIterator[list[subprocess.Popen[str]]]:
    admin = new_api_key()
    ports = [free_port(), free_port()]
    procs = [start_server(fresh_pg, admin, p, tmp_path / str(p)) for p in ports]
    try:
        await asyncio.gather(*(wait_ready(p, proc) for p, proc in zip(ports, procs, strict=True)))
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.timeout(300)  # two servers start and 1,500 keys expire on a busy machine
async def test_no_row_is_processed_by_both(fresh_pg: str, two_servers, tmp_path: Path) -> None:
    engine = create_engine(fresh_pg)
    sessions = session_factory(engine)
    org_id = await seed_keys(sessions, KEYS)
    # Both replicas are up and polling; make every key due at the same moment.
    await expire_keys(sessions, org_id)
    pending = KEYS
    for _ in range(3600):  # three minutes at most: a busy machine is slow, not wrong
        async with sessions() as s:
            pending = await s.scalar(
                select(func.count()).where(
                    orm.ApiKey.org_id == org_id, orm.ApiKey.expired_at.is_(None)
                )
            )
        if pending == 0:
            break
        await asyncio.sleep(0.05)
    assert pending == 0
    async with sessions() as s:
        subjects = (
            await s.scalars(
                select(orm.Event.subject_id).where(
                    orm.Event.org_id == org_id, orm.Event.type == "api_key.expired"
                )
            )
        ).all()
    await engine.dispose()
    assert len(subjects) == KEYS
    assert len(set(subjects)) == KEYS

    for proc in two_servers:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    outputs = server_outputs(tmp_path)
    assert len(outputs) == 2
    per_process = [
        sum(int(n) for n in re.findall(r"key-expiry: owner \S+ processed (\d+) rows", out))
        for out in outputs
    ]
    # Every claimed row was processed once, by one replica; both replicas took part.
    assert sum(per_process) == KEYS, per_process
    assert all(n > 0 for n in per_process), per_process
    assert all("Traceback" not in out for out in outputs)
