"""The reconciler base past its first batch: 1,000 clusters on 63 fake hosts, driven pass by pass
with the manual clock, on both databases.

A *pass* is ``step()`` repeated until it claims nothing. Every cluster must be handled exactly
once per pass (never twice, never skipped), a pass with nothing due claims nothing, and every
cluster is healthy after two passes: the first places its replica, the hosts report them running
(which wakes each cluster), the second probes them ready.
"""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

from gpuyard.core.clock import ManualClock
from gpuyard.server import orm
from gpuyard.server.controllers.base import Claim
from gpuyard.server.controllers.clusters import (
    PROBE_SECONDS,
    ClusterController,
    ClusterWork,
    Probe,
    ProbeResult,
)
from gpuyard.server.db import write_session
from gpuyard.server.services.clusters import ClusterSpec, create_cluster
from tests.harness import Api
from tests.server.market import FakeHost, join_host

pytestmark = pytest.mark.slow  # many seconds: scheduled first (tests/conftest.py)

CLUSTERS = 1000
HOSTS = 63  # 1,008 GPUs
GPUS_PER_HOST = 16


class Counting(ClusterController):
    """The real controller, counting what each fetch claims; every replica answers healthy."""

    def __init__(self, api: Api) -> None:
        super().__init__(
            sessions=api.ctx.sessions,
            clock=api.clock,
            owner="fair",
            prober=self.healthy,
        )
        self.claimed: list[str] = []
        self.batches: list[int] = []

    async def healthy(self, probe: Probe) -> ProbeResult:
        return ProbeResult(healthy=True, models=("m",))

    async def fetch(self) -> list[Claim[ClusterWork]]:
        claims = await super().fetch()
        self.claimed.extend(c.item.id for c in claims)
        if claims:
            self.batches.append(len(claims))
        return claims

    async def one_pass(self, clock: ManualClock) -> Counter[str]:
        """Steps until one claims nothing; a millisecond passes after each, so that each batch
        is scheduled a little later than the one before."""
        self.claimed, self.batches = [], []
        while await self.step():
            clock.advance(0.001)
        return Counter(self.claimed)


async def statuses(api: Api) -> Counter[str]:
    async with api.ctx.sessions() as s:
        rows = await s.execute(select(orm.Cluster.status, func.count()).group_by("status"))
        return Counter({status: n for status, n in rows.all()})


async def run_everything(hosts: list[FakeHost]) -> int:
    """Each host starts what it was told to run and reports it running (port from its range)."""
    started = 0
    for host in hosts:
        for a in (await host.beat())["workloads"]:
            host.report(a["spec"]["id"], "running", host_port=40000 + started % 1000)
            started += 1
        await host.beat()
    return started


@pytest.mark.timeout(900)
async def test_a_thousand_clusters_each_reconciled_once_per_pass(api: Api) -> None:
    rtx = [("RTX 4090", 24564)] * GPUS_PER_HOST
    hosts = [await join_host(api, rtx, name=f"h{i}") for i in range(HOSTS)]
    t = await api.tenant()
    async with write_session(api.ctx.sessions) as session:
        for i in range(CLUSTERS):
            spec = ClusterSpec(name=f"c{i}", gpu_type="rtx-4090", replicas=1, container="x", env={})
            await create_cluster(session, clock=api.clock, org_id=t.org_id, spec=spec)
    ctl = Counting(api)
    batches_per_pass = -(-CLUSTERS // ctl.batch_size)

    first = await ctl.one_pass(api.clock)  # every cluster places its replica
    assert len(first) == CLUSTERS and set(first.values()) == {1}
    assert len(ctl.batches) == batches_per_pass
    assert await statuses(api) == {"provisioning": CLUSTERS}

    assert await ctl.one_pass(api.clock) == Counter()  # nothing is due until the hosts report back

    assert await run_everything(hosts) == CLUSTERS
    second = await ctl.one_pass(api.clock)  # woken by the reports: probed ready
    assert second.keys() == first.keys() and set(second.values()) == {1}
    assert await statuses(api) == {"healthy": CLUSTERS}

    api.clock.advance(PROBE_SECONDS - 1)  # (the last batch of the pass is due latest)
    assert await ctl.one_pass(api.clock) == Counter()  # not due again before the probe interval
    api.clock.advance(1)
    third = await ctl.one_pass(api.clock)  # each re-probed once, oldest-due first
    assert third.keys() == first.keys() and set(third.values()) == {1}
    assert ctl.claimed == list(second)  # in the order they were last handled
    assert await statuses(api) == {"healthy": CLUSTERS}
    async with api.ctx.sessions() as s:
        held = await s.scalar(select(func.count()).where(orm.Cluster.lease_token.is_not(None)))
    assert held == 0
