"""Puts an org's spending out of reach once its balance has been at or below zero for the grace
period: its running instances are stopped (not destroyed) and its clusters scaled to zero, once,
with a ``billing.enforced`` event. A credit or top-up that brings the balance above zero clears
the state (services/balances.py); the org starts its instances and scales its clusters again
itself. The operator's own org is never enforced."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.server import orm
from gpuyard.server.controllers.base import Reconciler
from gpuyard.server.services import clusters, events, instances


@dataclass(frozen=True, slots=True)
class Depleted:
    org_id: str


class BillingEnforcer(Reconciler[orm.BillingAccount, Depleted, None]):
    name = "billing-enforcer"
    model = orm.BillingAccount

    def due(self) -> ColumnElement[bool]:
        return and_(
            orm.BillingAccount.depleted_at.is_not(None),
            orm.BillingAccount.enforced_at.is_(None),
            orm.BillingAccount.balance_cents <= 0,
        )

    def snapshot(self, row: orm.BillingAccount) -> Depleted:
        return Depleted(org_id=row.org_id)

    async def apply(
        self, session: AsyncSession, row: orm.BillingAccount, item: Depleted, result: None
    ) -> None:
        operator = await session.scalar(select(orm.Org.is_operator).where(orm.Org.id == row.org_id))
        row.enforced_at = self.clock.now()
        if operator:
            return
        running = list(
            (
                await session.scalars(
                    select(orm.Instance.id).where(
                        orm.Instance.org_id == row.org_id,
                        orm.Instance.destroyed_at.is_(None),
                        orm.Instance.intended_status == "running",
                    )
                )
            ).all()
        )
        for instance_id in running:
            await instances.set_state(
                session, clock=self.clock, org_id=row.org_id, instance_ref=instance_id,
                running=False,
            )  # fmt: skip
        scaled = list(
            (
                await session.scalars(
                    select(orm.Cluster.id).where(
                        orm.Cluster.org_id == row.org_id,
                        orm.Cluster.deleted_at.is_(None),
                        orm.Cluster.replicas > 0,
                    )
                )
            ).all()
        )
        for cluster_id in scaled:
            await clusters.update_cluster(
                session, clock=self.clock, org_id=row.org_id, cluster_id=cluster_id,
                changes={"replicas": 0},
            )  # fmt: skip
        await events.record(
            session,
            clock=self.clock,
            org_id=row.org_id,
            type="billing.enforced",
            data={
                "balance_cents": row.balance_cents,
                "stopped_instances": running,
                "scaled_clusters": scaled,
            },
        )
