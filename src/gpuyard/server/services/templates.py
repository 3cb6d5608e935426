"""Templates: an image, its docker options and an onstart script, that workergroups run.

A template's ``hash_id`` is a digest of what it launches, as Vast's is: two identical templates
share one. An org sees its own templates and the public ones of every org; it deletes only its
own, and not while a live workergroup runs it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import Conflict, InvalidRequest, NotFound
from gpuyard.core.ids import new_id
from gpuyard.core.serverless import Template, docker_options
from gpuyard.server import orm
from gpuyard.server.services import events


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    name: str | None = None
    image: str | None = None
    tag: str | None = None
    env: str | None = None
    onstart: str | None = None
    runtype: str | None = None
    extra_filters: dict[str, Any] | None = None
    disk_space: float | None = None
    readme: str | None = None
    description: str | None = None
    private: bool = True


def to_domain(row: orm.Template) -> Template:
    return Template(
        id=row.id,
        number=row.pk,
        org_id=row.org_id,
        hash_id=row.hash_id,
        name=row.name,
        image=row.image,
        tag=row.tag,
        env=row.env,
        onstart=row.onstart,
        runtype=row.runtype,
        extra_filters=dict(row.extra_filters),
        disk_space=row.disk_space,
        readme=row.readme,
        description=row.description,
        private=row.private,
        created_at=row.created_at,
    )


def _hash(spec: TemplateSpec) -> str:
    what = [spec.image, spec.tag, spec.env, spec.onstart, spec.runtype, spec.extra_filters]
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]


def _visible(org_id: str) -> ColumnElement[bool]:
    return or_(orm.Template.org_id == org_id, orm.Template.private.is_(False))


async def create_template(
    session: AsyncSession, *, clock: Clock, org_id: str, spec: TemplateSpec
) -> Template:
    if not (spec.image or spec.onstart):
        raise InvalidRequest("a template needs an image or an onstart command", param="image")
    docker_options(spec.env, param="env")  # refuse options that could never launch
    row = orm.Template(
        id=new_id("tpl"),
        org_id=org_id,
        hash_id=_hash(spec),
        name=spec.name,
        image=spec.image,
        tag=spec.tag,
        env=spec.env,
        onstart=spec.onstart,
        runtype=spec.runtype,
        extra_filters=dict(spec.extra_filters or {}),
        disk_space=spec.disk_space,
        readme=spec.readme,
        description=spec.description,
        private=spec.private,
        created_at=clock.now(),
    )
    session.add(row)
    await session.flush()
    await events.record(
        session,
        clock=clock,
        org_id=org_id,
        type="template.created",
        subject_id=row.id,
        data={"hash_id": row.hash_id, "name": row.name},
    )
    return to_domain(row)


async def search_templates(
    session: AsyncSession, *, org_id: str, hash_id: str | None = None, limit: int = 500
) -> list[Template]:
    stmt = select(orm.Template).where(_visible(org_id))
    if hash_id is not None:
        stmt = stmt.where(orm.Template.hash_id == hash_id)
    stmt = stmt.order_by(orm.Template.created_at, orm.Template.pk).limit(limit)
    return [to_domain(r) for r in await session.scalars(stmt)]


async def find_template(
    session: AsyncSession, *, org_id: str, hash_id: str | None, number: int | None
) -> orm.Template:
    """The template a workergroup names, the org's own before a public one."""
    stmt = select(orm.Template).where(_visible(org_id))
    if number is not None:
        stmt = stmt.where(orm.Template.pk == number)
    if hash_id is not None:
        stmt = stmt.where(orm.Template.hash_id == hash_id)
    own_first = (orm.Template.org_id != org_id, orm.Template.pk)
    row = await session.scalar(stmt.order_by(*own_first).limit(1))
    if row is None:
        what = f"hash {hash_id}" if hash_id is not None else f"id {number}"
        param = "template_hash" if hash_id is not None else "template_id"
        raise NotFound(f"no template with {what}", code="template_not_found", param=param)
    return row


async def delete_template(
    session: AsyncSession, *, clock: Clock, org_id: str, hash_id: str | None, number: int | None
) -> None:
    if hash_id is None and number is None:
        raise InvalidRequest("give hash_id or template_id", param="hash_id")
    stmt = select(orm.Template).where(orm.Template.org_id == org_id)
    if number is not None:
        stmt = stmt.where(orm.Template.pk == number)
    if hash_id is not None:
        stmt = stmt.where(orm.Template.hash_id == hash_id)
    rows = list(await session.scalars(stmt.with_for_update()))
    if not rows:
        raise NotFound("no such template of yours", code="template_not_found")
    ids = [r.id for r in rows]
    used = await session.scalar(
        select(orm.Workergroup.id).where(
            orm.Workergroup.template_id.in_(ids), orm.Workergroup.deleted_at.is_(None)
        )
    )
    if used:
        raise Conflict(f"workergroup {used} runs this template", code="template_in_use")
    await session.execute(delete(orm.Template).where(orm.Template.id.in_(ids)))
    for r in rows:
        await events.record(
            session,
            clock=clock,
            org_id=org_id,
            type="template.deleted",
            subject_id=r.id,
            data={"hash_id": r.hash_id},
        )
