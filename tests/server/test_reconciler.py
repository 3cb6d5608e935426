"""The reconciler base, driven step by step with a manual clock on both databases."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from gpuyard.core.errors import PermanentError, TemporaryError
from gpuyard.server import orm
from gpuyard.server.controllers.key_expiry import ExpiringKey, KeyExpiryController
from tests.harness import Api


def controller(api: Api, owner: str, cls: type[KeyExpiryController] = KeyExpiryController):
    return cls(sessions=api.ctx.sessions, clock=api.clock, owner=owner)


async def make_expiring_keys(api: Api, n: int) -> list[str]:
    t = await api.tenant()
    expires = (api.clock.now() + timedelta(minutes=1)).isoformat()
    ids = []
    for i in range(n):
        r = await t.client.post(
            f"/v1/orgs/{t.org_id}/api-keys", json={"name": f"k{i}", "expires_at": expires}
        )
        ids.append(r.json()["id"])
    api.clock.advance(minutes=2)
    return ids


async def expired_events(api: Api) -> list[str]:
    async with api.ctx.sessions() as s:
        rows = await s.scalars(
            select(orm.Event.subject_id).where(orm.Event.type == "api_key.expired")
        )
        return [r for r in rows if r]


async def test_two_owners_claim_disjoint_batches(api: Api) -> None:
    ids = await make_expiring_keys(api, 5)
    a, b = controller(api, "a"), controller(api, "b")
    a.batch_size = b.batch_size = 3  # type: ignore[misc]
    claims_a = await a.fetch()
    claims_b = await b.fetch()
    assert len(claims_a) == 3 and len(claims_b) == 2
    assert {c.item.id for c in claims_a}.isdisjoint({c.item.id for c in claims_b})
    assert await b.fetch() == []
    for c in claims_b:
        await b._reconcile(c)
    for c in claims_a:
        await a._reconcile(c)
    assert sorted(await expired_events(api)) == sorted(ids)
    assert await a.fetch() == [] and await b.fetch() == []
    key = (await api.client.get("/v1/me")).json()  # the operator key is untouched
    assert key["key_id"] not in ids


async def test_an_expired_lease_moves_and_the_old_holder_loses(api: Api) -> None:
    [key_id] = await make_expiring_keys(api, 1)
    a, b = controller(api, "a"), controller(api, "b")
    [stale] = await a.fetch()
    assert await b.fetch() == []
    api.clock.advance(seconds=a.lease.total_seconds() + 1)
    [fresh] = await b.fetch()
    assert fresh.item.id == key_id and fresh.token != stale.token
    await a._reconcile(stale)  # a's work comes back late: dropped
    assert await expired_events(api) == []
    await b._reconcile(fresh)
    assert await expired_events(api) == [key_id]


class Flaky(KeyExpiryController):
    failures: list[Exception] = []
    failed: list[str] = []

    async def process(self, item: ExpiringKey) -> None:
        if self.failures:
            raise self.failures.pop(0)

    async def fail(self, session, row, item: ExpiringKey, reason: str) -> None:
        self.failed.append(reason)
        row.revoked_at = self.clock.now()


async def test_temporary_errors_park_the_row_for_their_delay(api: Api) -> None:
    [key_id] = await make_expiring_keys(api, 1)
    c = controller(api, "a", Flaky)
    c.failures = [TemporaryError("upstream busy", delay=30), RuntimeError("bug")]
    assert await c.step() == 1
    assert await c.step() == 0
    api.clock.advance(seconds=31)
    assert await c.step() == 1  # the crash parks it for retry_delay
    assert await c.step() == 0
    api.clock.advance(seconds=c.retry_delay + 1)
    assert await c.step() == 1
    assert await expired_events(api) == [key_id]


async def test_permanent_errors_call_fail_once(api: Api) -> None:
    await make_expiring_keys(api, 1)
    c = controller(api, "a", Flaky)
    c.failures = [PermanentError("cannot ever")]
    c.failed = []
    assert await c.step() == 1
    assert c.failed == ["cannot ever"]
    assert await c.step() == 0
    assert await expired_events(api) == []


async def test_revoked_and_unexpired_keys_are_not_due(api: Api) -> None:
    ids = await make_expiring_keys(api, 2)
    async with api.ctx.sessions() as s, s.begin():
        await s.execute(
            update(orm.ApiKey).where(orm.ApiKey.id == ids[0]).values(revoked_at=api.clock.now())
        )
    c = controller(api, "a")
    assert await c.step() == 1
    assert await expired_events(api) == [ids[1]]
    async with api.ctx.sessions() as s:
        leased = await s.scalar(select(func.count()).where(orm.ApiKey.lease_token.is_not(None)))
    assert leased == 0


class Slow(KeyExpiryController):
    """Its act takes as long as the test says; the lease is short (in real seconds) so that the
    base renews it several times meanwhile."""

    lease = timedelta(seconds=0.3)
    release: asyncio.Event

    async def process(self, item: ExpiringKey) -> None:
        await self.release.wait()


async def lease_expiry(api: Api, key_id: str) -> datetime | None:
    async with api.ctx.sessions() as s:
        return await s.scalar(select(orm.ApiKey.lease_expires_at).where(orm.ApiKey.id == key_id))


async def test_a_lease_is_renewed_while_a_long_act_runs_and_taken_over_when_not(api: Api) -> None:
    [key_id] = await make_expiring_keys(api, 1)
    a = controller(api, "a", Slow)
    a.release = asyncio.Event()
    b = controller(api, "b")
    stepping = asyncio.create_task(a.step())
    first = None
    deadline = asyncio.get_running_loop().time() + 10
    while first is None:  # claimed
        first = await lease_expiry(api, key_id)
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    api.clock.advance(seconds=1)  # the claim's lease has run out by the clock...
    while (await lease_expiry(api, key_id) or first) <= first:  # ...until the renewal
        assert asyncio.get_running_loop().time() < deadline, "the lease was never renewed"
        await asyncio.sleep(0.01)
    assert await b.fetch() == []  # renewed: nobody else may take it
    a.release.set()
    assert await stepping == 1
    assert await expired_events(api) == [key_id]

    # A token that is no longer renewed loses its rows once the lease ends.
    [second] = await make_expiring_keys(api, 1)
    [stale] = await a.fetch()
    assert await a.renew(stale.token) == 1
    api.clock.advance(seconds=1)
    [taken] = await b.fetch()
    assert taken.item.id == second and await a.renew(stale.token) == 0
    await a._reconcile(stale)  # its late result is dropped
    await b._reconcile(taken)
    assert sorted(await expired_events(api)) == sorted([key_id, second])


class Together(KeyExpiryController):
    apply_together = True
    broken: str | None = None

    async def apply(self, session, row, item, result):  # type: ignore[no-untyped-def]
        if item.id == self.broken:
            raise RuntimeError("this row cannot be applied")
        await super().apply(session, row, item, result)


async def test_a_batch_applied_together_falls_back_to_one_by_one(api: Api) -> None:
    ids = await make_expiring_keys(api, 6)
    together = controller(api, "t", Together)
    assert isinstance(together, Together)
    assert await together.step() == 6
    assert sorted(await expired_events(api)) == sorted(ids)  # one transaction, every row
    more = await make_expiring_keys(api, 4)
    together.broken = more[1]
    assert await together.step() == 4
    assert sorted(await expired_events(api)) == sorted(ids + more[:1] + more[2:])
    async with api.ctx.sessions() as s:
        parked = await s.scalar(select(orm.ApiKey).where(orm.ApiKey.id == more[1]))
        assert parked is not None and parked.expired_at is None and parked.lease_token is None
        assert parked.next_run_at is not None  # retried later, like any failed apply
