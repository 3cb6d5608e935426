"""An endpoint's and a workergroup's logs, as ``vastai get endpt-logs`` / ``wrkgrp-logs`` show
them: the events about it (created, changed, workers placed, ready, stopped, replaced, and why),
one line each, at Vast's four levels: ``info0`` the lines alone, ``info1`` with the reason,
``trace`` and ``debug`` with everything the event holds."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.server import orm
from gpuyard.server.services import endpoints, workergroups

DEFAULT_TAIL = 200


async def _lines(
    session: AsyncSession, org_id: str, subjects: list[str], tail: int | None
) -> dict[str, str]:
    rows = list(
        await session.scalars(
            select(orm.Event)
            .where(orm.Event.org_id == org_id, orm.Event.subject_id.in_(subjects))
            .order_by(orm.Event.pk.desc())
            .limit(tail or DEFAULT_TAIL)
        )
    )
    rows.reverse()
    levels: dict[str, list[str]] = {"info0": [], "info1": [], "trace": [], "debug": []}
    for e in rows:
        head = f"{e.created_at.isoformat().replace('+00:00', 'Z')} [{e.subject_id}] {e.type}"
        reason = e.data.get("reason") or e.data.get("error") or e.data.get("message")
        levels["info0"].append(head)
        levels["info1"].append(f"{head}: {reason}" if reason else head)
        full = f"{head} {json.dumps(e.data, sort_keys=True, default=str)}"
        levels["trace"].append(full)
        levels["debug"].append(full)
    return {level: "\n".join(lines) for level, lines in levels.items()}


async def endpoint_logs(
    session: AsyncSession, *, org_id: str, ref: str | int, tail: int | None
) -> dict[str, str]:
    ep = await endpoints.row_of(session, org_id=org_id, ref=ref)
    groups = await session.scalars(
        select(orm.Workergroup.id).where(orm.Workergroup.endpoint_id == ep.id)
    )
    return await _lines(session, org_id, [ep.id, *groups], tail)


async def workergroup_logs(
    session: AsyncSession, *, org_id: str, ref: str | int, tail: int | None
) -> dict[str, str]:
    group = await workergroups.row_of(session, org_id=org_id, ref=ref)
    return await _lines(session, org_id, [group.id], tail)
