"""Starts every controller of a server replica as a task, and stops them on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from typing import Protocol

from gpuyard.server.context import AppContext
from gpuyard.server.controllers.autoscaler import AutoscalerController
from gpuyard.server.controllers.billing_enforcer import BillingEnforcer
from gpuyard.server.controllers.clusters import ClusterController
from gpuyard.server.controllers.heard_flush import HeardFlush
from gpuyard.server.controllers.hosts import HostHealthController
from gpuyard.server.controllers.key_expiry import KeyExpiryController
from gpuyard.server.controllers.metering import MeteringController
from gpuyard.server.controllers.retention import RetentionSweeper
from gpuyard.server.controllers.token_holds import TokenHoldSweeper
from gpuyard.server.controllers.vector_files import VectorFileController
from gpuyard.server.controllers.webhook_dispatch import WebhookDispatcher
from gpuyard.server.services.wakeups import Wakeups

STOP_GRACE_S = 3.0


class Controller(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def watches(self) -> str | None:
        """The table whose wakeups (``services/wakeups.py``) call ``hint``; ``None``: none."""
        ...

    async def run(self) -> None: ...

    def hint(self) -> None: ...

    def stop_soon(self) -> None:
        """End ``run`` at its next idle point, outside any transaction."""
        ...


def replica_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def build_controllers(ctx: AppContext) -> dict[str, Controller]:
    owner = replica_owner()
    poll = ctx.settings.controller_poll_seconds
    made: list[Controller] = [
        KeyExpiryController(
            sessions=ctx.sessions,
            clock=ctx.clock,
            owner=owner,
            metrics=ctx.metrics,
            poll_seconds=poll,
        ),
        HostHealthController(
            sessions=ctx.sessions,
            clock=ctx.clock,
            owner=owner,
            metrics=ctx.metrics,
            poll_seconds=min(poll, ctx.settings.heartbeat_seconds),
            heard=ctx.heard,
            unreachable_after=ctx.settings.host_unreachable_seconds,
            offline_after=ctx.settings.host_offline_seconds,
        ),
        ClusterController(
            sessions=ctx.sessions,
            clock=ctx.clock,
            owner=owner,
            metrics=ctx.metrics,
            poll_seconds=min(poll, ctx.settings.heartbeat_seconds),
            drain_seconds=ctx.settings.replica_drain_seconds,
        ),
        AutoscalerController(
            sessions=ctx.sessions,
            clock=ctx.clock,
            owner=owner,
            metrics=ctx.metrics,
            poll_seconds=poll,
            report_url=ctx.settings.resolved_public_url(),
            tuning=ctx.settings.autoscale_tuning(),
        ),
        VectorFileController(
            sessions=ctx.sessions,
            clock=ctx.clock,
            owner=owner,
            metrics=ctx.metrics,
            poll_seconds=poll,
            ingest=ctx.vectors.file_items,
            with_pgvector=lambda: ctx.vector_search.kind == "pgvector",
        ),
        MeteringController(
            sessions=ctx.sessions,
            clock=ctx.clock,
            owner=owner,
            metrics=ctx.metrics,
            poll_seconds=poll,
            settle_seconds=ctx.settings.meter_settle_seconds,
            policy=ctx.settings.balance_policy(),
        ),
        TokenHoldSweeper(
            sessions=ctx.sessions,
            clock=ctx.clock,
            owner=owner,
            metrics=ctx.metrics,
            poll_seconds=poll,
            policy=ctx.settings.balance_policy(),
        ),
        BillingEnforcer(
            sessions=ctx.sessions,
            clock=ctx.clock,
            owner=owner,
            metrics=ctx.metrics,
            poll_seconds=poll,
        ),
        WebhookDispatcher(
            sessions=ctx.sessions,
            clock=ctx.clock,
            owner=owner,
            metrics=ctx.metrics,
            poll_seconds=poll,
            allow_private=ctx.settings.webhook_allow_private_targets,
            timeout_seconds=ctx.settings.webhook_timeout_seconds,
        ),
        RetentionSweeper(
            sessions=ctx.sessions,
            clock=ctx.clock,
            poll_seconds=poll,
            completion_retention_days=ctx.settings.completion_retention_days,
        ),
        HeardFlush(heard=ctx.heard, sessions=ctx.sessions),
    ]
    return {c.name: c for c in made}


class ControllerSet:
    def __init__(self, controllers: dict[str, Controller], wakeups: Wakeups | None = None) -> None:
        self.controllers = controllers
        self.wakeups = wakeups
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for name, controller in self.controllers.items():
            self._tasks.append(asyncio.create_task(controller.run(), name=f"controller:{name}"))
            if self.wakeups is not None and controller.watches is not None:
                self.wakeups.listen(controller.watches, controller.hint)

    def hint(self, name: str) -> None:
        if name in self.controllers:
            self.controllers[name].hint()

    async def stop(self) -> None:
        """Each controller ends at its next idle point; one still in a step after
        ``STOP_GRACE_S`` is cancelled (a cancel in a transaction makes the pool log an error)."""
        for controller in self.controllers.values():
            controller.stop_soon()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_GRACE_S)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.wakeups is not None:
            self.wakeups.clear()
