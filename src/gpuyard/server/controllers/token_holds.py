"""Settles or releases the holds of inference requests whose server stopped before settling them.

A request's hold is taken, and recorded in ``token_holds``, in one transaction before it goes
upstream; its settlement deletes the row in the transaction that charges it. A server killed
between the two leaves the row. Once the hold timeout (``GPUYARD_TOKEN_HOLD_SECONDS``, longer than
a request may take) has passed, this controller, on any replica, settles it from the request's
log when the gateway logged its usage, and otherwise releases it in full, as a card authorization
never captured is released (services/token_charges.sweep). The row is locked while it does, so a
late settlement of the same request waits and then charges only what was used.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, true
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.money import BalancePolicy
from gpuyard.server import orm
from gpuyard.server.controllers.base import Reconciler
from gpuyard.server.services import token_charges


class TokenHoldSweeper(Reconciler[orm.TokenHold, str, None]):
    name = "token-holds"
    model = orm.TokenHold
    batch_size = 100

    def __init__(self, *, policy: BalancePolicy | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.policy = policy or BalancePolicy()

    def due(self) -> ColumnElement[bool]:
        return true()  # each row is scheduled for its hold's timeout (``next_run_at``)

    def snapshot(self, row: orm.TokenHold) -> str:
        return row.request_id

    async def apply(
        self, session: AsyncSession, row: orm.TokenHold, item: str, result: None
    ) -> None:
        await token_charges.sweep(session, clock=self.clock, policy=self.policy, hold=row)
