"""The gateway's ports (gateway/ports.py) filled in over the database, and the gateway made
with them: the composition root's part of the data plane. Each is a thin adapter over one
service, each call its own short session."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.core.clock import Clock
from gpuyard.core.money import BalancePolicy
from gpuyard.core.principal import Principal
from gpuyard.gateway.ports import (
    CompletionRow,
    LoadReport,
    ReadyReplica,
    RequestLogRow,
    Routable,
    RoutableCluster,
    WorkerGrant,
    WorkerWait,
)
from gpuyard.gateway.serverless import DEFAULT_WAIT_S
from gpuyard.gateway.service import Gateway
from gpuyard.server.db import write_session
from gpuyard.server.services import (
    auth,
    balances,
    cluster_load,
    completions,
    rate_limits,
    request_logs,
    routable,
    routing,
    token_charges,
)


class DatabaseReplicas:
    """``ReplicaSource``: live clusters and their ready replicas, read in one session."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def load(self) -> Routable:
        async with self._sessions() as session:
            clusters, replicas = await routable.routable(session)
        return Routable(
            clusters=[
                RoutableCluster(
                    id=c.id,
                    org_id=c.org_id,
                    slug=c.slug,
                    public=c.public,
                    models=tuple(c.models),
                    created_at=c.created_at.timestamp(),
                    task=c.task,
                )
                for c in clusters
            ],
            replicas=[
                ReadyReplica(
                    id=w.id,
                    cluster_id=w.owner_id,
                    url=f"http://{address}:{w.host_port}",
                    served_models=tuple(w.served_models or ()),
                )
                for w, address in replicas
            ],
        )


class DatabaseKeys:
    """``Keys``: the API key as every other route checks it (services/auth.py)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def principal(self, secret: str | None) -> Principal:
        """The key's principal, refused when its org's spending was stopped for want of funds
        (cached with the key: a credit that restores the balance forgets the cache)."""
        async with self._sessions() as session:
            principal, _ = await auth.authenticate(session, clock=self._clock, secret=secret)
            await balances.check_funds(session, org_id=principal.org_id)
        return principal


class DatabaseLogs:
    """``LogSink``: a batch of request-log rows in one write transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def write(self, rows: Sequence[RequestLogRow]) -> None:
        async with write_session(self._sessions) as session:
            await request_logs.add(session, [row._asdict() for row in rows])


class DatabaseLimiter:
    """``Limiter``: each key's minute of requests and tokens as one row, shared by every server
    replica on the database (services/rate_limits.py)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def admit(self, principal: Principal) -> None:
        async with write_session(self._sessions) as session:
            await rate_limits.admit(session, principal=principal, now=self._clock.now())

    async def add_tokens(self, key_id: str, tokens: int) -> None:
        async with write_session(self._sessions) as session:
            await rate_limits.add_tokens(
                session, key_id=key_id, tokens=tokens, now=self._clock.now()
            )


class DatabaseCompletions:
    """``CompletionSink``: kept chat completions, in one write transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def write(self, rows: Sequence[CompletionRow]) -> None:
        async with write_session(self._sessions) as session:
            await completions.add(session, [row._asdict() for row in rows])


class DatabaseServerless:
    """``ServerlessRouter``: ``/route/`` for the org's endpoint named like the model
    (services/routing.py), each ask its own write transaction, as each poll of ``/route/`` is."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def route(
        self, org_id: str, name: str, *, cost: float, request_idx: int
    ) -> WorkerGrant | WorkerWait | None:
        async with write_session(self._sessions) as session:
            found = await routing.route_by_name(
                session,
                clock=self._clock,
                org_id=org_id,
                name=name,
                cost=cost,
                request_idx=request_idx,
            )
        if found is None:
            return None
        if isinstance(found, routing.Waiting):
            return WorkerWait(request_idx=found.request_idx)
        return _worker_grant(found)

    async def reroute(
        self, org_id: str, request_idx: int, refused: tuple[int, ...]
    ) -> WorkerGrant | None:
        async with write_session(self._sessions) as session:
            found = await routing.reroute(
                session,
                clock=self._clock,
                org_id=org_id,
                request_idx=request_idx,
                refused=refused,
            )
        return None if found is None else _worker_grant(found)

    async def abandon(self, org_id: str, request_idx: int) -> None:
        async with write_session(self._sessions) as session:
            await routing.abandon(
                session, clock=self._clock, org_id=org_id, request_idx=request_idx
            )

    async def names(self, org_id: str) -> dict[str, float]:
        async with self._sessions() as session:
            return await routing.endpoint_names(session, org_id=org_id)


def _worker_grant(found: routing.Grant) -> WorkerGrant:
    """A worker as ``/route/`` grants it, with the ``auth_data`` the worker checks."""
    auth_data = {
        "url": found.url,
        "signature": found.signature,
        "reqnum": found.reqnum,
        "endpoint": found.endpoint,
        "cost": found.cost,
        "request_idx": found.request_idx,
    }
    return WorkerGrant(
        endpoint_id=found.endpoint_id,
        worker_id=found.worker_id,
        request_idx=found.request_idx,
        url=found.url,
        auth_data=auth_data,
    )


class DatabaseLoad:
    """``LoadSink``: a gateway's measures of the replicas' load (services/cluster_load.py)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def write(self, reporter: str, reports: Sequence[LoadReport]) -> None:
        async with write_session(self._sessions) as session:
            await cluster_load.record(
                session,
                reporter=reporter,
                reports=[cluster_load.Measured(*r) for r in reports],
                now=self._clock.now(),
            )


class DatabaseSpend:
    """``Spend``: a request's hold and its charge by the token (services/token_charges.py), each
    in its own transaction. A request to a model the price book does not price (known from
    ``PricedModels``, read at most once a second) opens no transaction at all."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock, policy: BalancePolicy
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._policy = policy
        self._priced = token_charges.PricedModels(sessions, clock)

    def prices_changed(self) -> None:
        self._priced.forget()

    async def hold(
        self,
        principal: Principal,
        request_id: str,
        model: str,
        body_bytes: int,
        max_tokens: int | None,
        characters: int = 0,
    ) -> int:
        if not await self._priced.priced(model):
            return 0
        async with write_session(self._sessions) as session:
            return await token_charges.hold(
                session,
                clock=self._clock,
                policy=self._policy,
                org_id=principal.org_id,
                request_id=request_id,
                model=model,
                body_bytes=body_bytes,
                max_tokens=max_tokens,
                characters=characters,
            )

    async def settle(
        self,
        principal: Principal,
        request_id: str,
        model: str,
        held_cents: int,
        input_tokens: int,
        output_tokens: int,
        characters: int = 0,
    ) -> None:
        async with write_session(self._sessions) as session:
            await token_charges.settle(
                session,
                clock=self._clock,
                policy=self._policy,
                org_id=principal.org_id,
                request_id=request_id,
                model=model,
                held_cents=held_cents,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                characters=characters,
            )


def database_gateway(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    policy: BalancePolicy | None = None,
    *,
    serverless_wait_s: float = DEFAULT_WAIT_S,
) -> Gateway:
    return Gateway(
        clock,
        replicas=DatabaseReplicas(sessions),
        keys=DatabaseKeys(sessions, clock),
        logs=DatabaseLogs(sessions),
        limiter=DatabaseLimiter(sessions, clock),
        kept=DatabaseCompletions(sessions),
        serverless=DatabaseServerless(sessions, clock),
        serverless_wait_s=serverless_wait_s,
        spend=DatabaseSpend(sessions, clock, policy or BalancePolicy()),
        load=DatabaseLoad(sessions, clock),
    )
