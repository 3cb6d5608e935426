"""Requests that only read never wait for SQLite's one write lock, a POST that only searches
(``POST /api/v0/bundles/``, marked ``@reads_only``) included; writes still take it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.harness import Api
from tests.server.market import join_host


@contextmanager
def write_lock_held(db_url: str) -> Iterator[None]:
    """Another process's writer: a transaction that holds the database's write lock."""
    conn = sqlite3.connect(db_url.split(":///", 1)[1], isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


async def test_searches_answer_while_another_writer_holds_the_lock(
    api: Api, db_url: str, db_kind: str
) -> None:
    if db_kind != "sqlite":
        pytest.skip("only SQLite has one write lock for the whole database")
    await join_host(api, [("RTX 4090", 24564)] * 2)
    t = await api.tenant()
    quick = api.client_for(t.key)
    quick.timeout = httpx.Timeout(5.0)
    assert (await quick.get("/v1/me")).status_code == 200  # its last use is recorded: fresh
    with write_lock_held(db_url):
        r = await quick.post("/api/v0/bundles/", json={"num_gpus": {"gte": 1}})
        assert r.status_code == 200, r.text
        assert len(r.json()["offers"]) == 2
        assert (await quick.get("/api/v0/bundles/", params={"q": "{}"})).status_code == 200
        assert (await quick.get("/v1/me")).status_code == 200
        # A write still waits for the lock (here: longer than the client will).
        with pytest.raises(httpx.ReadTimeout):
            await quick.post(f"/v1/orgs/{t.org_id}/api-keys", json={"name": "waits"}, timeout=1.0)
    # Once the lock is free the write goes through, and a bad search is still a clean 400.
    r = await quick.post(f"/v1/orgs/{t.org_id}/api-keys", json={"name": "after"})
    assert r.status_code == 201, r.text
    r = await quick.post("/api/v0/bundles/", json={"no_such_field": {"eq": 1}})
    assert r.status_code == 400 and r.json()["success"] is False


async def test_a_search_writes_nothing(api: Api) -> None:
    """Marked read-only, the search's transaction commits nothing (both databases)."""
    await join_host(api, [("RTX 4090", 24564)])
    t = await api.tenant()
    before = (await t.client.get(f"/v1/orgs/{t.org_id}/events")).json()["data"]
    r = await t.client.post("/api/v0/bundles/", json={"type": "on-demand"})
    assert r.status_code == 200 and len(r.json()["offers"]) == 1
    assert (await t.client.get(f"/v1/orgs/{t.org_id}/events")).json()["data"] == before
