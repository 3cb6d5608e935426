"""Heartbeats at volume: one that changes nothing is answered from one read and writes nothing.

Nearly every heartbeat repeats what the server already has: the host is ``ready``, its facts are
the same, no workload report has news, and no removed workload waits for its agent to report it
gone. Such a *steady* heartbeat is answered from one read of the host and its workloads
(heartbeat_read.py: one statement, outside any transaction), and its time goes to the heard-from
buffer (heard.py) instead of an ``UPDATE``. Any other heartbeat takes the write path
(agents.authenticate and agents.heartbeat, one write transaction), which reads the host again
under its row lock. A change made between the read and the answer (a host marked unreachable, a
workload asked to stop) is seen by the next heartbeat, as it would be had it landed just after
this one.

A steady host's answer is kept, keyed by everything it is made of (host id, status, cordon and
each workload's id, spec hash and desired state), so an unchanged host's specs are not validated
and serialised again every few seconds; its stored facts are kept decoded, keyed by their text.
At most ``CONCURRENT`` heartbeats use the database at once, fewer than the pool's connections
(server/db.py): under a burst the rest wait here for a turn instead of opening and closing
overflow connections, which only adds work when the process is short of CPU.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gpuyard.core.agent_protocol import (
    Assignment,
    Desired,
    HeartbeatRequest,
    HeartbeatResponse,
    HostStatus,
)
from gpuyard.core.clock import Clock
from gpuyard.core.workload import WorkloadSpec
from gpuyard.server.db import write_session
from gpuyard.server.services import agents, workloads
from gpuyard.server.services.heard import HeardFrom
from gpuyard.server.services.heartbeat_read import HostReader, HostRow

CONCURRENT = 16
MAX_KEPT_HOSTS = 100_000

AnswerKey = tuple[Any, ...]


@dataclass(slots=True)
class _Kept:
    """What is kept of one steady host: its stored facts, decoded, and its last answer."""

    facts_json: str
    facts: dict[str, Any]
    answer_key: AnswerKey | None = None
    answer: bytes = b""


class Heartbeats:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        heard: HeardFrom,
        heartbeat_seconds: float,
    ) -> None:
        self._reader = HostReader(engine)
        self._sessions = sessions
        self._heard = heard
        self._interval = heartbeat_seconds
        self._kept: dict[int, _Kept] = {}
        self._turns = asyncio.Semaphore(CONCURRENT)

    async def answer(
        self, *, clock: Clock, credential: str | None, request: HeartbeatRequest
    ) -> bytes:
        """The heartbeat's answer as JSON (``HeartbeatResponse``), recording what it reports.
        The heartbeat that finds the heard-from buffer a second old writes it first."""
        secret_hash = agents.credential_hash(credential)
        async with self._turns:
            body = await self._read(clock, secret_hash, request)
            if body is None:
                body = await self._write(clock, credential, request)
        await self._heard.flush_if_due(self._sessions, clock.now())
        return body

    async def _read(
        self, clock: Clock, secret_hash: str, request: HeartbeatRequest
    ) -> bytes | None:
        """The answer of a steady heartbeat, its time noted; None when it changes something."""
        rows = await self._reader.read(secret_hash)
        if not rows:
            raise agents.unknown_host()
        host = rows[0]
        if host.host_status == HostStatus.REMOVED:
            raise agents.removed_host(host.host_id)
        if not self._changes_nothing(rows, request):
            return None
        self._heard.note(host.host_pk, clock.now())
        return self._steady_answer(rows)

    async def _write(
        self, clock: Clock, credential: str | None, request: HeartbeatRequest
    ) -> bytes:
        async with write_session(self._sessions) as session:
            written = await agents.record_heartbeat(
                session,
                clock=clock,
                credential=credential,
                request=request,
                heartbeat_seconds=self._interval,
            )
        return written.model_dump_json().encode()

    def _known(self, host: HostRow) -> _Kept:
        kept = self._kept.get(host.host_pk)
        if kept is None or kept.facts_json != host.host_facts_json:
            if len(self._kept) >= MAX_KEPT_HOSTS:
                self._kept.clear()
            kept = _Kept(facts_json=host.host_facts_json, facts=json.loads(host.host_facts_json))
            self._kept[host.host_pk] = kept
        return kept

    def _changes_nothing(self, rows: list[HostRow], request: HeartbeatRequest) -> bool:
        """True when recording ``request`` would change nothing but the heard-from time."""
        host = rows[0]
        if host.host_status != HostStatus.READY:
            return False
        if request.facts.model_dump(mode="json") != self._known(host).facts:
            return False
        reported = {s.id: s for s in request.workloads}
        for row in rows:
            if row.id is None:
                continue  # a host with no workloads
            status = reported.get(row.id)
            if status is None:
                if row.desired == Desired.REMOVED:
                    return False  # gone from the host: the write path deletes it
            elif workloads.news_of(row, status):
                return False
        return True

    def _steady_answer(self, rows: list[HostRow]) -> bytes:
        host = rows[0]
        assigned = [r for r in rows if r.id is not None]
        key = (
            host.host_id,
            host.host_status,
            host.host_cordoned,
            tuple((r.id, r.spec_hash, r.desired) for r in assigned),
        )
        kept = self._known(host)
        if kept.answer_key == key:
            return kept.answer
        kept.answer = (
            HeartbeatResponse(
                host_id=host.host_id,
                status=HostStatus(host.host_status),
                cordoned=host.host_cordoned,
                heartbeat_interval_s=self._interval,
                workloads=[_assignment(r) for r in assigned],
            )
            .model_dump_json()
            .encode()
        )
        kept.answer_key = key
        return kept.answer


def _assignment(row: HostRow) -> Assignment:
    assert row.spec_json is not None and row.desired is not None  # NOT NULL for a workload
    return Assignment(
        spec=WorkloadSpec.model_validate_json(row.spec_json), desired=Desired(row.desired)
    )
