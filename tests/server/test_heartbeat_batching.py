"""A heartbeat that changes nothing is read-only: its time waits in memory (services/heard.py)
and is written with every other host's at the next flush. Anything that changes state is written
at once, and host health judges silence only after flushing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gpuyard.server import orm
from gpuyard.server.controllers.hosts import HostHealthController
from gpuyard.server.db import create_engine
from tests.harness import Api, start_api
from tests.server.market import FakeHost, join_host

RTX = ("RTX 4090", 24564)


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement the app sends through SQLAlchemy while the block runs (all of them on
    SQLite; on Postgres the steady read goes to the driver directly, and only writes show)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.strip().upper())

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def writes(sent: list[str]) -> list[str]:
    """The statements that write or open a write transaction (SQLite's plain ``BEGIN`` is a
    read transaction until something writes)."""
    return [s for s in sent if not s.startswith("SELECT") and s != "BEGIN"]


async def heard_at(api: Api, host: FakeHost) -> datetime | None:
    async with api.ctx.sessions() as s:
        return await s.scalar(select(orm.Host.last_heartbeat_at).where(orm.Host.id == host.host_id))


async def row_version(api: Api, host: FakeHost) -> str:
    """Changes whenever the host's row is written: ``xmin`` on Postgres, the row itself on
    SQLite (whose statements ``statements`` sees anyway)."""
    async with api.ctx.sessions() as s:
        if s.get_bind().dialect.name == "postgresql":
            found = await s.scalar(
                text("SELECT xmin::text FROM hosts WHERE id = :id"), {"id": host.host_id}
            )
        else:
            hosts = orm.Base.metadata.tables["hosts"]
            found = repr((await s.execute(select(hosts).where(hosts.c.id == host.host_id))).one())
    return str(found)


async def host_pk(api: Api, host: FakeHost) -> int:
    async with api.ctx.sessions() as s:
        pk = await s.scalar(select(orm.Host.pk).where(orm.Host.id == host.host_id))
    assert pk is not None
    return pk


def host_health(api: Api) -> HostHealthController:
    s = api.ctx.settings
    return HostHealthController(
        sessions=api.ctx.sessions,
        clock=api.clock,
        owner="t",
        heard=api.ctx.heard,
        unreachable_after=s.host_unreachable_seconds,
        offline_after=s.host_offline_seconds,
    )


async def status_of(api: Api, host: FakeHost) -> str:
    r = await api.client.get(f"/v1/admin/hosts/{host.host_id}")
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


async def test_a_steady_heartbeat_writes_nothing_until_the_flush(api: Api) -> None:
    host = await join_host(api, [RTX])
    joined = await heard_at(api, host)
    version = await row_version(api, host)
    api.clock.advance(seconds=0.5)
    with statements(api.ctx.engine) as sent:
        answer = await host.beat()
        await host.beat()
    assert answer["status"] == "ready"
    assert writes(sent) == [], sent
    assert await row_version(api, host) == version
    assert await heard_at(api, host) == joined
    assert len(api.ctx.heard) == 1

    assert await api.ctx.heard.flush(api.ctx.sessions) == 1
    assert await heard_at(api, host) == api.clock.now()
    assert len(api.ctx.heard) == 0
    assert await api.ctx.heard.flush(api.ctx.sessions) == 0  # nothing left to write


async def test_the_heartbeat_a_second_after_the_first_unwritten_one_flushes(api: Api) -> None:
    a = await join_host(api, [RTX], name="a")
    b = await join_host(api, [RTX], name="b")
    joined = await heard_at(api, a)
    api.clock.advance(seconds=2)
    first = api.clock.now()
    await a.beat()
    api.clock.advance(seconds=0.6)
    await b.beat()
    assert await heard_at(api, a) == joined  # 0.6 s: not due yet
    api.clock.advance(seconds=0.6)
    await b.beat()  # 1.2 s after a's: writes both hosts' times before answering
    assert await heard_at(api, a) == first
    assert await heard_at(api, b) == api.clock.now()
    assert len(api.ctx.heard) == 0


async def test_a_flush_never_moves_last_heartbeat_at_backwards(api: Api) -> None:
    host = await join_host(api, [RTX])
    pk = await host_pk(api, host)
    api.clock.advance(seconds=10)
    await host.beat()
    await api.ctx.heard.flush(api.ctx.sessions)
    latest = await heard_at(api, host)
    assert latest == api.clock.now()

    heard = api.ctx.heard
    heard.note(pk, latest - timedelta(seconds=3))  # e.g. noted by a slower replica
    assert await heard.flush(api.ctx.sessions) == 1
    assert await heard_at(api, host) == latest

    heard.note(pk, latest + timedelta(seconds=2))
    heard.note(pk, latest + timedelta(seconds=1))  # an older time noted later does not win
    await heard.flush(api.ctx.sessions)
    assert await heard_at(api, host) == latest + timedelta(seconds=2)


async def test_a_host_that_heartbeats_steadily_never_goes_unreachable(api: Api) -> None:
    host = await join_host(api, [RTX])
    ctl = host_health(api)
    s = api.ctx.settings
    written = await heard_at(api, host)
    for _ in range(4):  # each step comes after more than the unreachable threshold
        api.clock.advance(seconds=s.host_unreachable_seconds + 5)
        await host.beat()
        assert await heard_at(api, host) == written  # only in memory so far
        assert await ctl.step() == 0  # the step writes it first, then judges
        written = await heard_at(api, host)
        assert written == api.clock.now()
        assert await status_of(api, host) == "ready"


async def test_a_silent_host_goes_unreachable_then_offline_from_its_last_heartbeat(
    api: Api,
) -> None:
    host = await join_host(api, [RTX])
    ctl = host_health(api)
    s = api.ctx.settings
    api.clock.advance(seconds=4)
    await host.beat()  # steady: noted, not written
    last = api.clock.now()
    api.clock.advance(seconds=s.host_unreachable_seconds - 1)
    assert await ctl.step() == 0  # counted from the buffered time, not from joining
    api.clock.advance(seconds=1)
    assert await ctl.step() == 1
    assert await status_of(api, host) == "unreachable"
    api.clock.advance(seconds=s.host_offline_seconds)
    assert await ctl.step() == 1
    assert await status_of(api, host) == "offline"
    events = (
        await api.client.get(
            f"/v1/orgs/{api.operator_org}/events", params={"type": "host.unreachable"}
        )
    ).json()["data"]
    assert [datetime.fromisoformat(e["data"]["last_heartbeat_at"]) for e in events] == [last]


async def test_an_unreachable_host_that_heartbeats_is_ready_at_once(api: Api) -> None:
    host = await join_host(api, [RTX])
    ctl = host_health(api)
    api.clock.advance(seconds=api.ctx.settings.host_unreachable_seconds + 1)
    assert await ctl.step() == 1
    assert await status_of(api, host) == "unreachable"
    api.clock.advance(seconds=1)
    with statements(api.ctx.engine) as sent:
        answer = await host.beat()
    assert answer["status"] == "ready"
    assert any(s.startswith("UPDATE HOSTS") for s in sent), sent
    assert await status_of(api, host) == "ready"  # no flush needed
    assert await heard_at(api, host) == api.clock.now()
    assert len(api.ctx.heard) == 0


async def test_news_is_written_at_once_and_a_repeat_is_not(api: Api) -> None:
    host = await join_host(api, [RTX, RTX])
    t = await api.tenant()
    offers = (await t.client.get(f"/v1/orgs/{t.org_id}/offers")).json()["data"]
    one = next(o for o in offers if o["num_gpus"] == 1)
    r = await t.client.post(
        f"/v1/orgs/{t.org_id}/vms", json={"offer_id": one["id"], "command": "sleep 600"}
    )
    assert r.status_code == 201, r.text
    vm = f"/v1/orgs/{t.org_id}/vms/{r.json()['id']}"
    [assigned] = (await host.beat())["workloads"]
    workload_id = assigned["spec"]["id"]

    api.clock.advance(seconds=5)
    host.report(workload_id, "running", host_port=40001)
    with statements(api.ctx.engine) as sent:
        await host.beat()
    assert any(s.startswith("UPDATE HOSTS") for s in sent), sent
    assert (await t.client.get(vm)).json()["actual_status"] == "running"
    assert await heard_at(api, host) == api.clock.now()

    api.clock.advance(seconds=5)
    version = await row_version(api, host)
    with statements(api.ctx.engine) as sent:
        again = await host.beat()  # the same report: nothing new
    assert writes(sent) == [], sent
    assert await row_version(api, host) == version
    assert [w["desired"] for w in again["workloads"]] == ["running"]

    assert (await t.client.post(f"{vm}/stop")).status_code == 200
    answer = await host.beat()  # a steady host's kept answer follows the change
    assert [w["desired"] for w in answer["workloads"]] == ["stopped"]
    host.report(workload_id, "stopped", exit_code=0)
    await host.beat()
    assert (await t.client.get(vm)).json()["actual_status"] == "stopped"


async def test_changed_facts_are_written_at_once(api: Api) -> None:
    host = await join_host(api, [RTX])
    host.facts = {
        **host.facts,
        "gpus": [*host.facts["gpus"], {**host.facts["gpus"][0], "index": 1, "uuid": "GPU-new"}],
    }
    await host.beat()
    got = (await api.client.get(f"/v1/admin/hosts/{host.host_id}")).json()
    assert [g["index"] for g in got["gpus"]] == [0, 1]
    assert await heard_at(api, host) == api.clock.now()


async def test_shutting_down_writes_what_was_heard(db_url: str, tmp_path: Path) -> None:
    async with start_api(db_url, tmp_path) as api:
        host = await join_host(api, [RTX])
        api.clock.advance(seconds=3)
        await host.beat()
        heard = api.clock.now()
        assert len(api.ctx.heard) == 1
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            written = await conn.scalar(
                select(orm.Host.last_heartbeat_at).where(orm.Host.id == host.host_id)
            )
    finally:
        await engine.dispose()
    assert written == heard


async def test_a_dropped_database_connection_fails_one_heartbeat_and_is_replaced(
    api: Api, db_kind: str, db_url: str
) -> None:
    if db_kind != "postgres":
        pytest.skip("SQLite has no server connections to lose")
    host = await join_host(api, [RTX])
    body = {"facts": host.facts, "workloads": []}
    await asyncio.gather(*(host.client.post("/v1/agent/heartbeat", json=body) for _ in range(4)))
    killer = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:  # every connection of the app's pool dies
        killed = await killer.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await killer.close()
    assert killed >= 1
    answers = [await host.client.post("/v1/agent/heartbeat", json=body) for _ in range(12)]
    codes = [r.status_code for r in answers]
    assert 503 in codes, codes
    assert {r.json()["code"] for r in answers if r.status_code != 200} == {"database_unavailable"}
    assert codes[-4:] == [200] * 4, codes  # a dead connection is dropped, not reused
