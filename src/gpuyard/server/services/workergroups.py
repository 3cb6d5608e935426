"""Workergroups: the pools of workers of an endpoint. Create, read, change and delete.

A workergroup names what runs (a template by ``template_hash`` or ``template_id``, or
``launch_args`` alone, or both: launch args over the template) and where (``search_params``:
``gpu_name`` and ``num_gpus`` choose the GPUs; Vast's defaults such as ``verified=True`` are
accepted). What runs is resolved when the group is created or changed, so a worker placed later
runs what the group said then. Its endpoint is named by ``endpoint_id`` (the integer or the
``ep_…`` id) or ``endpoint_name``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import InvalidRequest, NotFound
from gpuyard.core.ids import new_id
from gpuyard.core.pagination import Page
from gpuyard.core.serverless import (
    Launch,
    Placement,
    Workergroup,
    docker_options,
    launch_from_args,
    placement_from_search,
)
from gpuyard.server import orm
from gpuyard.server.services import endpoints, events, templates, wakeups
from gpuyard.server.services.pagination import paginate
from gpuyard.server.services.refs import by_ref

DEFAULT_GPU_RAM = 24.0  # GB, the seed's default
DEFAULT_TEST_WORKERS = 3
MAX_TEST_WORKERS = 64


@dataclass(frozen=True, slots=True)
class WorkergroupSpec:
    endpoint_ref: str | int | None = None
    endpoint_name: str | None = None
    template_hash: str | None = None
    template_number: int | None = None
    search_params: str | None = None
    launch_args: str | None = None
    gpu_ram: float | None = None
    test_workers: int | None = None


def to_domain(row: orm.Workergroup, ep: orm.Endpoint, tpl_number: int | None) -> Workergroup:
    return Workergroup(
        id=row.id,
        number=row.pk,
        org_id=row.org_id,
        endpoint_id=ep.id,
        endpoint_number=ep.pk,
        endpoint_name=ep.name,
        template_hash=row.template_hash,
        template_number=tpl_number,
        search_params=row.search_params,
        launch_args=row.launch_args,
        gpu_ram=row.gpu_ram,
        test_workers=row.test_workers,
        launch=Launch(image=row.image, command=row.command, env=dict(row.env), port=row.port),
        placement=Placement(gpu_key=row.gpu_key, num_gpus=row.num_gpus),
        status_reason=row.status_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _endpoint(session: AsyncSession, org_id: str, spec: WorkergroupSpec) -> orm.Endpoint:
    if spec.endpoint_ref is not None:
        return await endpoints.row_of(session, org_id=org_id, ref=spec.endpoint_ref)
    if spec.endpoint_name is not None:
        return await endpoints.row_named(session, org_id=org_id, name=spec.endpoint_name)
    raise InvalidRequest("give endpoint_id or endpoint_name", param="endpoint_id")


async def _resolve(
    session: AsyncSession, org_id: str, row: orm.Workergroup, spec: WorkergroupSpec
) -> None:
    """Write what the group runs and where, from the template, launch args and search."""
    base = Launch()
    row.template_id = None
    if spec.template_hash is not None or spec.template_number is not None:
        tpl = await templates.find_template(
            session, org_id=org_id, hash_id=spec.template_hash, number=spec.template_number
        )
        env, port = docker_options(tpl.env, param="template_hash")
        image = f"{tpl.image}:{tpl.tag}" if tpl.image and tpl.tag else tpl.image
        base = Launch(image=image, command=tpl.onstart, env=env, port=port)
        row.template_id, row.template_hash = tpl.id, tpl.hash_id
        if not row.search_params:  # the template's own filters, when the group names none
            row.search_params = " ".join(
                f"{k}={str(v).replace(' ', '_')}" for k, v in _eq_filters(tpl.extra_filters).items()
            )
    launch = launch_from_args(spec.launch_args, base)
    if not (launch.image or launch.command):
        raise InvalidRequest(
            "give template_hash or template_id, or launch_args with --image or --onstart-cmd",
            param="template_hash",
        )
    placement = placement_from_search(row.search_params)
    row.image, row.command, row.env, row.port = (
        launch.image,
        launch.command,
        launch.env,
        launch.port,
    )
    row.gpu_key, row.num_gpus = placement.gpu_key, placement.num_gpus


def _eq_filters(extra: dict[str, Any]) -> dict[str, Any]:
    """``{"gpu_name": {"eq": "RTX_4090"}}`` filters of a template, as ``field=value``."""
    return {
        k: v["eq"]
        for k, v in extra.items()
        if isinstance(v, dict) and "eq" in v and isinstance(v["eq"], str | int | float)
    }


def _check_numbers(gpu_ram: float, test_workers: int) -> None:
    if not 0 <= gpu_ram <= 10_000:
        raise InvalidRequest("gpu_ram must be between 0 and 10000 (GB)", param="gpu_ram")
    if not 0 <= test_workers <= MAX_TEST_WORKERS:
        raise InvalidRequest(
            f"test_workers must be between 0 and {MAX_TEST_WORKERS}", param="test_workers"
        )


async def row_of(
    session: AsyncSession, *, org_id: str, ref: str | int, lock: bool = False
) -> orm.Workergroup:
    cond = by_ref(orm.Workergroup, str(ref), "wg")
    row = None
    if cond is not None:
        stmt = select(orm.Workergroup).where(
            cond, orm.Workergroup.org_id == org_id, orm.Workergroup.deleted_at.is_(None)
        )
        row = await session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise NotFound(f"workergroup {ref} not found", code="workergroup_not_found")
    return row


async def _domain(session: AsyncSession, row: orm.Workergroup) -> Workergroup:
    ep = await session.scalar(select(orm.Endpoint).where(orm.Endpoint.id == row.endpoint_id))
    assert ep is not None
    number = None
    if row.template_id is not None:
        number = await session.scalar(
            select(orm.Template.pk).where(orm.Template.id == row.template_id)
        )
    return to_domain(row, ep, number)


async def create_workergroup(
    session: AsyncSession, *, clock: Clock, org_id: str, spec: WorkergroupSpec
) -> Workergroup:
    ep = await _endpoint(session, org_id, spec)
    gpu_ram = DEFAULT_GPU_RAM if spec.gpu_ram is None else spec.gpu_ram
    test_workers = DEFAULT_TEST_WORKERS if spec.test_workers is None else spec.test_workers
    _check_numbers(gpu_ram, test_workers)
    now = clock.now()
    row = orm.Workergroup(
        id=new_id("wg"),
        org_id=org_id,
        endpoint_id=ep.id,
        search_params=(spec.search_params or "").strip(),
        launch_args=spec.launch_args,
        gpu_ram=gpu_ram,
        test_workers=test_workers,
        env={},
        num_gpus=1,
        failures=0,
        created_at=now,
        updated_at=now,
    )
    await _resolve(session, org_id, row, spec)
    session.add(row)
    wakeups.wake(session, ep)
    await session.flush()
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="workergroup.created",
        subject_id=row.id,
        data={"endpoint_id": ep.id, "image": row.image, "search_params": row.search_params},
    )
    return to_domain(row, ep, await _template_number(session, row))


async def _template_number(session: AsyncSession, row: orm.Workergroup) -> int | None:
    if row.template_id is None:
        return None
    return await session.scalar(select(orm.Template.pk).where(orm.Template.id == row.template_id))


async def get_workergroup(session: AsyncSession, *, org_id: str, ref: str | int) -> Workergroup:
    return await _domain(session, await row_of(session, org_id=org_id, ref=ref))


async def list_workergroups(
    session: AsyncSession,
    *,
    org_id: str,
    limit: int,
    cursor: str | None,
    endpoint_ref: str | int | None = None,
) -> Page[Workergroup]:
    stmt = select(orm.Workergroup).where(
        orm.Workergroup.org_id == org_id, orm.Workergroup.deleted_at.is_(None)
    )
    if endpoint_ref is not None:
        ep = await endpoints.row_of(session, org_id=org_id, ref=endpoint_ref)
        stmt = stmt.where(orm.Workergroup.endpoint_id == ep.id)
    page = await paginate(
        session, stmt, model=orm.Workergroup, limit=limit, cursor=cursor, convert=lambda r: r
    )
    ep_ids = {r.endpoint_id for r in page.items}
    eps = {
        e.id: e
        for e in await session.scalars(select(orm.Endpoint).where(orm.Endpoint.id.in_(ep_ids)))
    }
    tpl_ids = {r.template_id for r in page.items if r.template_id}
    rows = await session.execute(
        select(orm.Template.id, orm.Template.pk).where(orm.Template.id.in_(tpl_ids))
    )
    numbers = {tid: pk for tid, pk in rows.all()}
    items = [to_domain(r, eps[r.endpoint_id], numbers.get(r.template_id or "")) for r in page.items]
    return Page(items=items, has_more=page.has_more, next_cursor=page.next_cursor)


async def update_workergroup(
    session: AsyncSession,
    *,
    clock: Clock,
    org_id: str,
    ref: str | int,
    spec: WorkergroupSpec,
) -> Workergroup:
    """Change what ``spec`` gives (``None``: unchanged). A change to what runs or where applies
    to workers placed from now on."""
    row = await row_of(session, org_id=org_id, ref=ref, lock=True)
    if spec.endpoint_ref is not None or spec.endpoint_name is not None:
        row.endpoint_id = (await _endpoint(session, org_id, spec)).id
    gpu_ram = row.gpu_ram if spec.gpu_ram is None else spec.gpu_ram
    test_workers = row.test_workers if spec.test_workers is None else spec.test_workers
    _check_numbers(gpu_ram, test_workers)
    row.gpu_ram, row.test_workers = gpu_ram, test_workers
    if spec.search_params is not None:
        row.search_params = spec.search_params.strip()
    if spec.launch_args is not None:
        row.launch_args = spec.launch_args
    tpl_number = None
    if row.template_id and spec.template_hash is None and spec.template_number is None:
        tpl_number = await _template_number(session, row)
    resolved = WorkergroupSpec(
        template_hash=spec.template_hash or (row.template_hash if tpl_number is not None else None),
        template_number=spec.template_number
        if spec.template_number is not None or spec.template_hash is not None
        else tpl_number,
        search_params=spec.search_params,
        launch_args=row.launch_args,
    )
    await _resolve(session, org_id, row, resolved)
    row.failures = 0
    row.status_reason = None
    row.updated_at = clock.now()
    await wakeups.wake_where(session, orm.Endpoint, orm.Endpoint.id == row.endpoint_id)
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="workergroup.updated",
        subject_id=row.id,
        data={"endpoint_id": row.endpoint_id, "image": row.image},
    )
    return await _domain(session, row)


async def delete_workergroup(
    session: AsyncSession, *, clock: Clock, org_id: str, ref: str | int
) -> None:
    """Gone for clients at once; the autoscaler drains and removes its workers."""
    row = await row_of(session, org_id=org_id, ref=ref, lock=True)
    row.deleted_at = row.updated_at = clock.now()
    await wakeups.wake_where(session, orm.Endpoint, orm.Endpoint.id == row.endpoint_id)
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="workergroup.deleted",
        subject_id=row.id,
        data={"endpoint_id": row.endpoint_id},
    )
