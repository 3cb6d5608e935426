"""Rows for metering tests and the metering benchmark: one org, hosts, and running instances on
them, inserted straight with SQLAlchemy Core (what renting and heartbeats would have written)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.credentials import hash_secret
from gpuyard.core.ids import new_id
from gpuyard.server import orm

PER_HOST = 8


async def add_org(session: AsyncSession, *, now: datetime, name: str = "Metered") -> str:
    org_id = new_id("org")
    await session.execute(
        insert(orm.Org).values(
            id=org_id,
            name=name,
            slug=f"{name.lower()}-{secrets.token_hex(3)}",
            status="active",
            is_operator=False,
            created_at=now,
            updated_at=now,
        )
    )
    return org_id


async def add_running_instances(
    session: AsyncSession,
    *,
    org_id: str,
    count: int,
    cents_per_hour: int,
    started_at: datetime,
    now: datetime,
) -> list[str]:
    """``count`` instances running since ``started_at`` at ``cents_per_hour``, eight to a host;
    their workload ids."""
    hosts: list[dict[str, Any]] = []
    instances: list[dict[str, Any]] = []
    workloads: list[dict[str, Any]] = []
    for i in range(count):
        if i % PER_HOST == 0:
            hosts.append(
                {
                    "id": new_id("host"),
                    "name": f"meter-{i // PER_HOST}",
                    "credential_hash": hash_secret(secrets.token_hex(16)),
                    "status": "ready",
                    "facts": {},
                    "address": "10.0.0.1",
                    "created_at": now,
                    "updated_at": now,
                    "status_changed_at": now,
                }
            )
        host_id = hosts[-1]["id"]
        workload_id = new_id("wl")
        instance_id = new_id("vm")
        workloads.append(
            {
                "id": workload_id,
                "org_id": org_id,
                "host_id": host_id,
                "kind": "instance",
                "owner_id": instance_id,
                "spec": {"id": workload_id},
                "spec_hash": "x",
                "desired": "running",
                "state": "running",
                "started_at": started_at,
                "created_at": started_at,
                "updated_at": started_at,
            }
        )
        instances.append(
            {
                "id": instance_id,
                "org_id": org_id,
                "host_id": host_id,
                "workload_id": workload_id,
                "offer_id": i,
                "gpu_name": "RTX 4090",
                "num_gpus": 1,
                "cents_per_hour": cents_per_hour,
                "intended_status": "running",
                "created_at": started_at,
                "updated_at": started_at,
            }
        )
    for rows, table in ((hosts, orm.Host), (workloads, orm.Workload), (instances, orm.Instance)):
        for start in range(0, len(rows), 2000):
            await session.execute(insert(table), rows[start : start + 2000])
    return [w["id"] for w in workloads]
