"""The server side of the agent protocol (core/agent_protocol.py): register and heartbeat."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.core import gpu_names
from gpuyard.core.agent_protocol import (
    HOST_CREDENTIAL_PREFIX,
    Assignment,
    Desired,
    HeartbeatRequest,
    HeartbeatResponse,
    HostStatus,
    RegisterRequest,
    RegisterResponse,
    WaitRequest,
    WaitResponse,
)
from gpuyard.core.clock import Clock
from gpuyard.core.credentials import hash_secret
from gpuyard.core.errors import PermissionDenied, Unauthenticated
from gpuyard.core.hosts import HostFacts, isolates
from gpuyard.core.ids import new_id
from gpuyard.core.workload import WorkloadSpec
from gpuyard.server import orm
from gpuyard.server.db import read_session
from gpuyard.server.services import events, join_tokens, offers, workloads
from gpuyard.server.services.hosts import operator_org_id
from gpuyard.server.services.wakeups import Wakeups


async def register(
    session: AsyncSession,
    *,
    clock: Clock,
    request: RegisterRequest,
    heartbeat_seconds: float,
) -> RegisterResponse:
    host_id = new_id("host")
    await join_tokens.consume(session, clock=clock, secret=request.token, host_id=host_id)
    credential = HOST_CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
    now = clock.now()
    facts = request.facts
    row = orm.Host(
        id=host_id,
        name=(request.name or facts.hostname).strip()[:200] or host_id,
        credential_hash=hash_secret(credential),
        status=HostStatus.READY,
        cordoned=False,
        draining=False,
        verified=True,
        facts=facts.model_dump(mode="json"),
        address=facts.address,
        created_at=now,
        updated_at=now,
        last_heartbeat_at=now,
        status_changed_at=now,
    )
    session.add(row)
    await session.flush()
    await _sync_gpus(session, row, facts)
    await offers.refresh_host(session, host=row)
    await workloads.wake_clusters_waiting_for_room(session)
    await events.record(
        session,
        clock=clock,
        org_id=await operator_org_id(session),
        type="host.registered",
        subject_id=host_id,
        data={"name": row.name, "gpus": [g.name for g in facts.gpus], "address": facts.address},
    )
    return RegisterResponse(
        host_id=host_id, credential=credential, heartbeat_interval_s=heartbeat_seconds
    )


# Built once: heartbeats are the server's most frequent call, and building is a good part of it.
_HEARD_FROM = (
    update(orm.Host)
    .where(orm.Host.credential_hash == bindparam("secret_hash"))
    .values(last_heartbeat_at=bindparam("heard_at"))
    .returning(orm.Host)
    .execution_options(synchronize_session=False)
)
_WORKLOADS_OF_HOST = select(orm.Workload).where(orm.Workload.host_id == bindparam("host_id"))


def credential_hash(credential: str | None) -> str:
    """What a host credential is stored as; ``Unauthenticated`` when it is not one."""
    if not credential or not credential.startswith(HOST_CREDENTIAL_PREFIX):
        raise Unauthenticated(
            "missing or malformed host credential (gyh_…); register the agent with a join token",
            code="invalid_host_credential",
        )
    return hash_secret(credential)


def unknown_host() -> Unauthenticated:
    return Unauthenticated("unknown host credential", code="invalid_host_credential")


def removed_host(host_id: str) -> PermissionDenied:
    return PermissionDenied(f"host {host_id} was removed by the operator", code="host_removed")


async def authenticate(session: AsyncSession, *, clock: Clock, credential: str | None) -> orm.Host:
    """The host whose credential this is, marked as heard from now. One statement finds, locks
    and touches the row (heartbeats are the server's most frequent call)."""
    row = await session.scalar(
        _HEARD_FROM, {"secret_hash": credential_hash(credential), "heard_at": clock.now()}
    )
    if row is None:
        raise unknown_host()
    if row.status == HostStatus.REMOVED:
        raise removed_host(row.id)
    return row


async def _sync_gpus(session: AsyncSession, host: orm.Host, facts: HostFacts) -> bool:
    """Make the host's GPU rows match its facts; True when anything changed. A GPU that is gone
    but still allocated is kept until its workload ends."""
    rows = {
        g.index: g for g in await session.scalars(select(orm.Gpu).where(orm.Gpu.host_id == host.id))
    }
    changed = False
    seen = set()
    for gpu in facts.gpus:
        seen.add(gpu.index)
        values: dict[str, Any] = {
            "uuid": gpu.uuid,
            "name": gpu.name,
            "gpu_key": gpu_names.gpu_key(gpu.name),
            "vram_mb": gpu.vram_mb,
        }
        row = rows.get(gpu.index)
        if row is None:
            session.add(orm.Gpu(host_id=host.id, index=gpu.index, **values))
            changed = True
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            changed = True
    for index, row in rows.items():
        if index not in seen and row.workload_id is None:
            await session.delete(row)
            changed = True
    if changed:
        await session.flush()
    return changed


async def heartbeat(
    session: AsyncSession,
    *,
    clock: Clock,
    host: orm.Host,
    request: HeartbeatRequest,
    heartbeat_seconds: float,
) -> HeartbeatResponse:
    now = clock.now()
    facts = request.facts.model_dump(mode="json")
    dirty = False
    if facts != host.facts:
        dirty = isolates(facts) != isolates(host.facts or {})  # whose offers they are changed
        host.facts = facts
        host.address = request.facts.address
        host.updated_at = now
        dirty = await _sync_gpus(session, host, request.facts) or dirty
    if host.status != HostStatus.READY:
        previous = host.status
        host.status = HostStatus.READY
        host.status_changed_at = now
        dirty = True
        await workloads.wake_clusters_on(session, host_id=host.id)
        await workloads.wake_clusters_waiting_for_room(session)
        await events.record(
            session,
            clock=clock,
            org_id=await operator_org_id(session),
            type="host.recovered",
            subject_id=host.id,
            data={"name": host.name, "was": previous},
        )
    reported = {s.id: s for s in request.workloads}
    assignments = []
    rows = await session.scalars(_WORKLOADS_OF_HOST, {"host_id": host.id})
    for row in rows:
        status = reported.get(row.id)
        if row.desired == Desired.REMOVED and status is None:
            await workloads.forget(session, row=row, now=now)
            dirty = True
            continue
        if status is not None:
            await workloads.apply_status(session, clock=clock, row=row, status=status)
        assignments.append(
            Assignment(spec=WorkloadSpec.model_validate(row.spec), desired=Desired(row.desired))
        )
    if dirty:
        await offers.refresh_host(session, host=host)
    return HeartbeatResponse(
        host_id=host.id,
        status=HostStatus(host.status),
        cordoned=host.cordoned,
        heartbeat_interval_s=heartbeat_seconds,
        workloads=assignments,
    )


async def record_heartbeat(
    session: AsyncSession,
    *,
    clock: Clock,
    credential: str | None,
    request: HeartbeatRequest,
    heartbeat_seconds: float,
) -> HeartbeatResponse:
    """A heartbeat on the write path: authenticate the host (marking it heard from) and record
    what it reports, in the caller's transaction."""
    host = await authenticate(session, clock=clock, credential=credential)
    return await heartbeat(
        session,
        clock=clock,
        host=host,
        request=request,
        heartbeat_seconds=heartbeat_seconds,
    )


async def wait_for_work(
    sessions: async_sessionmaker[AsyncSession],
    *,
    wakeups: Wakeups,
    credential: str | None,
    request: WaitRequest,
    longest: float,
) -> WaitResponse:
    """Hold the agent until its host's assignments change here, or the timeout. The database is
    read once, before the wait: a waiting agent holds no connection."""
    async with read_session(sessions) as session:
        row = await session.execute(
            select(orm.Host.id, orm.Host.status).where(
                orm.Host.credential_hash == credential_hash(credential)
            )
        )
        found = row.first()
    if found is None:
        raise unknown_host()
    host_id, status = found
    if status == HostStatus.REMOVED:
        raise removed_host(host_id)
    changed, mark = await wakeups.wait_for_host(
        host_id, mark=request.mark, seconds=min(request.timeout_s, longest)
    )
    return WaitResponse(changed=changed, mark=mark)
