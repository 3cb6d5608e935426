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
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, insert, select, update

from gpuyard.core.credentials import hash_secret, new_api_key
from gpuyard.core.ids import new_id
from gpuyard.server import orm
from gpuyard.server.db import create_engine, session_factory
from tests import databases

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


def start_server(url: str, admin_key: str, port: int, tmp: str) -> subprocess.Popen[str]:
    env = os.environ | {
        "GPUYARD_DATABASE_URL": url,
        "GPUYARD_ADMIN_KEY": admin_key,
        "GPUYARD_CONTROLLER_POLL_SECONDS": "0.05",
        "GPUYARD_DATA_DIR": tmp,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gpuyard.cli.main", "server", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def wait_ready(port: int, proc: subprocess.Popen[str]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            assert proc.poll() is None, proc.communicate()[0]
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
    procs = [start_server(fresh_pg, admin, p, str(tmp_path / str(p))) for p in ports]
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


async def test_no_row_is_processed_by_both(fresh_pg: str, two_servers) -> None:
    engine = create_engine(fresh_pg)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    org_id = new_id("org")
    async with sessions() as s, s.begin():
        await s.execute(
            insert(orm.Org).values(
                id=org_id,
                name="Load",
                slug="load",
                status="active",
                is_operator=False,
                created_at=now,
                updated_at=now,
            )
        )
        await s.execute(
            insert(orm.ApiKey),
            [
                {
                    "id": new_id("key"),
                    "org_id": org_id,
                    "name": f"k{i}",
                    "prefix": "vl_x",
                    "secret_hash": hash_secret(new_api_key()),
                    "scopes": ["org:read"],
                    "created_at": now,
                    "expires_at": now + timedelta(days=1),
                }
                for i in range(KEYS)
            ],
        )
    # Both replicas are up and polling; make every key due at the same moment.
    async with sessions() as s, s.begin():
        await s.execute(
            update(orm.ApiKey)
            .where(orm.ApiKey.org_id == org_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    pending = KEYS
    for _ in range(1200):
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

    outputs = []
    for proc in two_servers:
        proc.send_signal(signal.SIGINT)
        outputs.append(proc.communicate(timeout=20)[0])
    per_process = [
        sum(int(n) for n in re.findall(r"key-expiry: owner \S+ processed (\d+) rows", out))
        for out in outputs
    ]
    # Every claimed row was processed once, by one replica; both replicas took part.
    assert sum(per_process) == KEYS, per_process
    assert all(n > 0 for n in per_process), per_process
    assert all("Traceback" not in out for out in outputs)
