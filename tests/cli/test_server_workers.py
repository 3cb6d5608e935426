"""``gpuyard server --workers 2``, the real command in a subprocess, on SQLite and on Postgres:
both workers answer on the one port, the leased controllers still process each due row exactly
once, SIGINT and SIGTERM stop every process cleanly whatever signal handling was inherited, a
killed worker is replaced while the other serves, the workers of a killed parent stop, and every
worker's access log leaves out heartbeats and keys sent in URLs.

Nothing sleeps for time: every wait polls for a condition with a deadline.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from gpuyard.core.credentials import new_api_key
from gpuyard.server import orm
from gpuyard.server.db import create_engine, session_factory
from tests import databases
from tests.cli.up_kit import (
    START_TIMEOUT_S,
    Launcher,
    Server,
    alive,
    answering_pids,
    assert_no_traceback,
    ignored_signals,
    listening,
    me,
    spread,
    wait_for_workers,
)
from tests.server.key_load import expire_keys, seed_keys

pytestmark = pytest.mark.slow
KEYS = 600
OWNER_LINE = re.compile(r"key-expiry: owner [^:\s]+:(\d+):\S+ processed (\d+) rows")


@pytest.fixture(params=["sqlite", "postgres"])
def database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dict[str, str], str]]:
    """(the server's environment for it, its URL) for an empty database of each kind."""
    if request.param == "sqlite":
        yield {}, f"sqlite+aiosqlite:///{tmp_path / 'data' / 'gpuyard.db'}"
        return
    problem = databases.run(databases.postgres_available())
    if problem is not None:
        if os.environ.get("GPUYARD_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"Postgres is required (GPUYARD_TEST_REQUIRE_POSTGRES=1) but: {problem}")
        pytest.skip(f"no Postgres at {databases.admin_pg_url()}: {problem}")
    url = databases.run(databases.create_pg_database())
    try:
        yield {"GPUYARD_DATABASE_URL": url}, url
    finally:
        databases.run(databases.drop_pg_database(url))


async def _expire_keys_at_once(url: str, count: int) -> str:
    """``count`` API keys of a new org, made due for the key-expiry controller in one
    statement; the org's id."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        org_id = await seed_keys(sessions, count)
        await expire_keys(sessions, org_id)
    finally:
        await engine.dispose()
    return org_id


async def _expiry(url: str, org_id: str) -> tuple[int, list[str]]:
    """(keys of the org not yet marked expired, the subjects of its api_key.expired events)."""
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as s:
            pending = await s.scalar(
                select(func.count()).where(
                    orm.ApiKey.org_id == org_id, orm.ApiKey.expired_at.is_(None)
                )
            )
            subjects = (
                await s.scalars(
                    select(orm.Event.subject_id).where(
                        orm.Event.org_id == org_id, orm.Event.type == "api_key.expired"
                    )
                )
            ).all()
        return int(pending or 0), list(subjects)
    finally:
        await engine.dispose()


def _assert_stopped_cleanly(server: Server, workers: set[int]) -> None:
    assert server.stderr.count("Application shutdown complete") == len(workers), server.output()
    assert server.stderr.rstrip().endswith("stopped"), server.output()
    assert_no_traceback(server)
    assert not listening(server.port)
    assert not any(alive(pid) for pid in workers), server.output()


def test_two_workers_answer_on_one_port_and_process_each_due_row_once(
    gpuyard: Launcher, database: tuple[dict[str, str], str]
) -> None:
    env, url = database
    chosen = new_api_key()
    server = gpuyard(
        "--workers",
        "2",
        command="server",
        env={**env, "GPUYARD_ADMIN_KEY": chosen, "GPUYARD_CONTROLLER_POLL_SECONDS": "0.05"},
    )
    server.wait_ready()
    workers = wait_for_workers(server, 2)

    assert answering_pids(server, workers) == workers  # both serve; the parent serves nothing
    # Kept-alive connections stay with the worker they came to: each takes a fair share of them
    # (a binomial 40 x 1/2 falls under 8 once in 100,000 runs).
    shares = spread(server, 40)
    assert set(shares) == workers and min(shares.values()) >= 8, shares
    assert me(server, chosen).status_code == 200
    for pid in workers:  # its own session: a terminal's Ctrl-C reaches the parent alone
        assert os.getsid(pid) == pid != os.getsid(server.popen.pid)
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert chosen.encode() not in environ and b"GPUYARD_ADMIN_KEY" not in environ

    org_id = databases.run(_expire_keys_at_once(url, KEYS))
    deadline = time.monotonic() + START_TIMEOUT_S
    while (pending := databases.run(_expiry(url, org_id)))[0]:
        assert time.monotonic() < deadline, f"{pending[0]} keys not expired\n{server.output()}"
        time.sleep(0.1)
    subjects = pending[1]
    assert len(subjects) == KEYS == len(set(subjects))  # one event per key, none twice

    assert server.interrupt() == 0, server.output()  # Ctrl-C as a terminal sends it
    _assert_stopped_cleanly(server, workers)
    processed: dict[int, int] = {}
    for pid, rows in OWNER_LINE.findall(server.stderr):
        processed[int(pid)] = processed.get(int(pid), 0) + int(rows)
    # Every due row was processed by exactly one worker; both took part; only workers did.
    assert sum(processed.values()) == KEYS, processed
    assert set(processed) == workers, processed


@pytest.mark.parametrize("inherit", ["default", "both-ignored"])
def test_sigterm_stops_every_worker(gpuyard: Launcher, inherit: str) -> None:
    """SIGTERM to the parent (systemd, docker stop) drains every worker and exits 0, also when
    the parent was started with SIGINT and SIGTERM ignored."""
    server = gpuyard("--workers", "2", command="server", inherit=inherit)
    server.wait_ready()
    workers = wait_for_workers(server, 2)
    for pid in {server.popen.pid, *workers}:
        assert not ignored_signals(pid) & {signal.SIGINT, signal.SIGTERM}

    server.popen.send_signal(signal.SIGTERM)

    assert server.wait_exit() == 0, server.output()
    _assert_stopped_cleanly(server, workers)


def test_a_killed_worker_is_replaced_and_the_workers_of_a_killed_parent_stop(
    gpuyard: Launcher,
) -> None:
    chosen = new_api_key()
    server = gpuyard("--workers", "2", command="server", env={"GPUYARD_ADMIN_KEY": chosen})
    server.wait_ready()
    first, second = sorted(wait_for_workers(server, 2))
    # Both serve before one is killed: a worker that dies still starting is a start-up failure,
    # and the parent stops them all rather than start it again.
    assert answering_pids(server, {first, second}) == {first, second}

    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while alive(first):  # its socket closes when it has exited, not when the signal is sent
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.01)
    # The other worker serves meanwhile, and a new one takes the killed one's place.
    assert me(server, chosen).status_code == 200
    workers = wait_for_workers(server, 2, but={first})
    assert second in workers
    assert answering_pids(server, workers) == workers
    assert "was killed by SIGKILL while serving; starting another" in server.stderr

    os.kill(server.popen.pid, signal.SIGKILL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while any(alive(pid) for pid in workers) or listening(server.port):
        assert time.monotonic() < deadline, f"workers {workers} still run\n{server.output()}"
        time.sleep(0.05)
    assert server.stderr.count("the parent process is gone: stopping") == 2, server.output()
    assert server.stderr.count("Application shutdown complete") == 2, server.output()  # drained
    with pytest.raises(httpx.TransportError):
        me(server, chosen)


def test_every_workers_access_log_redacts_keys_and_leaves_out_heartbeats(
    gpuyard: Launcher,
) -> None:
    chosen = new_api_key()
    server = gpuyard("--workers", "2", command="server", env={"GPUYARD_ADMIN_KEY": chosen})
    server.wait_ready()
    workers = wait_for_workers(server, 2)

    # Each try on a new connection: which worker it is, then a heartbeat (refused, and logged
    # all the same) and a request with the key in its URL.
    served: set[int] = set()
    sent = 0
    deadline = time.monotonic() + START_TIMEOUT_S
    while served != workers:
        assert time.monotonic() < deadline, f"served by {served} of {workers}"
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
            served |= {int(p) for p in re.findall(r'gpuyard_process_info\{pid="(\d+)"\}', text)}
            bogus = {"Authorization": "Bearer gyh_x", "Content-Type": "application/json"}
            conn.request("POST", "/v1/agent/heartbeat", body=b"{}", headers=bogus)
            refused = conn.getresponse()
            assert refused.read() and refused.status in (401, 422)  # no such host, or no facts
            conn.request("GET", f"/api/v0/users/current/?api_key={chosen}")
            assert conn.getresponse().status == 200
            sent += 1
        finally:
            conn.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while server.stdout.count("/api/v0/users/current/") < sent:
        assert time.monotonic() < deadline, server.output()  # written after the answer
        time.sleep(0.05)

    log = server.stdout + server.stderr
    assert chosen not in log
    assert log.count("/api/v0/users/current/?api_key=[redacted] HTTP/1.1") == sent, log
    assert "/v1/agent/heartbeat" not in log, log
    assert log.count('"GET /metrics HTTP/1.1" 200') == sent, log  # the access log is on
