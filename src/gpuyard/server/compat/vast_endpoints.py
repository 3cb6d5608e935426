"""Vast serverless configuration: endpoints (``/api/v0/endptjobs/``), workergroups (the CLI's
``/api/v0/autojobs/`` and the SDK's ``/api/v0/workergroups/``, one set of handlers) and templates
(``/api/v0/template/``), over services/endpoints.py, workergroups.py and templates.py.

GET and DELETE come with JSON bodies (``client_id``, ``api_key``, the id again) that say nothing
the path and the key do not: they are not read.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from gpuyard.core.autoscaling import EndpointKnobs
from gpuyard.core.errors import InvalidRequest
from gpuyard.core.principal import Principal
from gpuyard.server.compat.vast_scopes import Reader, Writer
from gpuyard.server.compat.vast_template_filters import matching
from gpuyard.server.deps import ClockDep, Session
from gpuyard.server.schemas.vast import Success, vast_errors
from gpuyard.server.schemas.vast_serverless import (
    Created,
    EndpointBody,
    Message,
    OneEndpoint,
    Results,
    TemplateBody,
    TemplateCreated,
    TemplateDelete,
    Templates,
    VastEndpoint,
    VastTemplate,
    VastWorkergroup,
    WorkergroupBody,
    WorkergroupCreated,
)
from gpuyard.server.services import endpoints, orgs, templates, workergroups
from gpuyard.server.services.templates import TemplateSpec
from gpuyard.server.services.workergroups import WorkergroupSpec

router = APIRouter(tags=["vast serverless"])
_GROUPS = ("/api/v0/autojobs", "/api/v0/workergroups")
# What `vastai update workergroup` sends as search_params when it is given none: not a change.
_CLI_DEFAULT_SEARCH = "verified=True rentable=True rented=False"


async def _org_number(session: Session, principal: Principal) -> int:
    return (await orgs.get_org(session, org_id=principal.org_id)).number


async def _all_endpoints(session: Session, org_id: str) -> list[Any]:
    found: list[Any] = []
    cursor = None
    while True:
        page = await endpoints.list_endpoints(session, org_id=org_id, limit=100, cursor=cursor)
        found.extend(page.items)
        if not page.has_more:
            return found
        cursor = page.next_cursor


@router.get("/api/v0/endptjobs/", response_model=Results, responses=vast_errors(403))
async def show_endpoints(principal: Reader, session: Session) -> Results:
    """Every endpoint of the caller's org (`vastai show endpoints`)."""
    number = await _org_number(session, principal)
    rows = await _all_endpoints(session, principal.org_id)
    return Results(results=[VastEndpoint.of(e, org_number=number) for e in rows])


@router.get(
    "/api/v0/endptjobs/{endpoint_id}/", response_model=OneEndpoint, responses=vast_errors(403, 404)
)
async def show_endpoint(endpoint_id: str, principal: Reader, session: Session) -> OneEndpoint:
    """One endpoint, as `result` (what the serverless SDK reads) and a one-row `results`."""
    e = await endpoints.get_endpoint(session, org_id=principal.org_id, ref=endpoint_id)
    row = VastEndpoint.of(e, org_number=await _org_number(session, principal))
    return OneEndpoint(result=row, results=[row])


@router.post("/api/v0/endptjobs/", response_model=Created, responses=vast_errors(403, 409))
async def create_endpoint(
    body: EndpointBody, principal: Writer, session: Session, clock: ClockDep
) -> Created:
    """`vastai create endpoint`: `{"success": true, "result": <id>}`."""
    knobs = EndpointKnobs(**body.knob_values())
    e = await endpoints.create_endpoint(
        session, clock=clock, org_id=principal.org_id, name=body.endpoint_name, knobs=knobs
    )
    return Created(result=e.number)


@router.put(
    "/api/v0/endptjobs/{endpoint_id}/", response_model=Success, responses=vast_errors(403, 404)
)
async def update_endpoint(
    endpoint_id: str, body: EndpointBody, principal: Writer, session: Session, clock: ClockDep
) -> Success:
    """`vastai update endpoint`: fields sent as `null` stay as they are."""
    changes: dict[str, Any] = body.knob_values()
    changes["endpoint_name"] = body.endpoint_name
    changes["endpoint_state"] = body.endpoint_state
    await endpoints.update_endpoint(
        session, clock=clock, org_id=principal.org_id, ref=endpoint_id, changes=changes
    )
    return Success()


@router.delete(
    "/api/v0/endptjobs/{endpoint_id}/", response_model=Success, responses=vast_errors(403, 404)
)
async def delete_endpoint(
    endpoint_id: str, principal: Writer, session: Session, clock: ClockDep
) -> Success:
    """`vastai delete endpoint`: its workergroups go too; its workers drain, then stop."""
    await endpoints.delete_endpoint(session, clock=clock, org_id=principal.org_id, ref=endpoint_id)
    return Success()


def _group_spec(body: WorkergroupBody) -> WorkergroupSpec:
    return WorkergroupSpec(
        endpoint_ref=body.endpoint_id,
        endpoint_name=body.endpoint_name,
        template_hash=body.template_hash,
        template_number=body.template_id,
        search_params=body.search_params,
        launch_args=body.launch_args,
        gpu_ram=None if body.gpu_ram is None else float(body.gpu_ram),
        test_workers=body.test_workers,
    )


async def show_workergroups(principal: Reader, session: Session) -> Results:
    """Every workergroup of the caller's org (`vastai show workergroups`)."""
    number = await _org_number(session, principal)
    found: list[VastWorkergroup] = []
    cursor = None
    while True:
        page = await workergroups.list_workergroups(
            session, org_id=principal.org_id, limit=100, cursor=cursor
        )
        found.extend(VastWorkergroup.of(g, org_number=number) for g in page.items)
        if not page.has_more:
            return Results(results=found)
        cursor = page.next_cursor


async def show_workergroup(workergroup_id: str, principal: Reader, session: Session) -> Results:
    g = await workergroups.get_workergroup(session, org_id=principal.org_id, ref=workergroup_id)
    number = await _org_number(session, principal)
    return Results(results=[VastWorkergroup.of(g, org_number=number)])


async def create_workergroup(
    body: WorkergroupBody, principal: Writer, session: Session, clock: ClockDep
) -> WorkergroupCreated:
    """`vastai create workergroup`: `{"success": true, "id": <id>}`. Given a template and only
    the CLI's default query, the search parameters come from the template."""
    spec = _group_spec(body)
    named = body.template_hash is not None or body.template_id is not None
    if named and (body.search_params or "").strip() == _CLI_DEFAULT_SEARCH:
        spec = replace(spec, search_params=None)
    g = await workergroups.create_workergroup(
        session, clock=clock, org_id=principal.org_id, spec=spec
    )
    return WorkergroupCreated(id=g.number, result=g.number)


async def update_workergroup(
    workergroup_id: str, body: WorkergroupBody, principal: Writer, session: Session, clock: ClockDep
) -> Success:
    """`vastai update workergroup`: fields sent as `null` stay as they are, and so do the search
    parameters when the CLI sends only its default query."""
    spec = _group_spec(body)
    if (body.search_params or "").strip() == _CLI_DEFAULT_SEARCH:
        spec = replace(spec, search_params=None)
    await workergroups.update_workergroup(
        session, clock=clock, org_id=principal.org_id, ref=workergroup_id, spec=spec
    )
    return Success()


async def delete_workergroup(
    workergroup_id: str, principal: Writer, session: Session, clock: ClockDep
) -> Success:
    """`vastai delete workergroup`: its workers drain, then stop."""
    await workergroups.delete_workergroup(
        session, clock=clock, org_id=principal.org_id, ref=workergroup_id
    )
    return Success()


for _prefix in _GROUPS:
    router.add_api_route(
        f"{_prefix}/",
        show_workergroups,
        methods=["GET"],
        response_model=Results,
        responses=vast_errors(403),
    )
    router.add_api_route(
        f"{_prefix}/{{workergroup_id}}/",
        show_workergroup,
        methods=["GET"],
        response_model=Results,
        responses=vast_errors(403, 404),
    )
    router.add_api_route(
        f"{_prefix}/",
        create_workergroup,
        methods=["POST"],
        response_model=WorkergroupCreated,
        responses=vast_errors(403, 404),
    )
    router.add_api_route(
        f"{_prefix}/{{workergroup_id}}/",
        update_workergroup,
        methods=["PUT"],
        response_model=Success,
        responses=vast_errors(403, 404),
    )
    router.add_api_route(
        f"{_prefix}/{{workergroup_id}}/",
        delete_workergroup,
        methods=["DELETE"],
        response_model=Success,
        responses=vast_errors(403, 404),
    )


@router.post("/api/v0/template/", response_model=TemplateCreated, responses=vast_errors(403))
async def create_template(
    body: TemplateBody, principal: Writer, session: Session, clock: ClockDep
) -> TemplateCreated:
    """`vastai create template`."""
    disk = body.recommended_disk_space
    try:
        disk_gb = None if disk is None or disk == "" else float(disk)
    except ValueError:
        raise InvalidRequest(
            "disk space must be a number", param="recommended_disk_space"
        ) from None
    spec = TemplateSpec(
        name=body.name,
        image=body.image,
        tag=body.tag,
        env=body.env,
        onstart=body.onstart,
        runtype=body.runtype,
        extra_filters=body.extra_filters,
        disk_space=disk_gb,
        readme=body.readme,
        description=body.desc,
        private=True if body.private is None else body.private,
    )
    t = await templates.create_template(session, clock=clock, org_id=principal.org_id, spec=spec)
    number = await _org_number(session, principal)
    return TemplateCreated(template=VastTemplate.of(t, creator_number=number))


@router.get("/api/v0/template/", response_model=Templates, responses=vast_errors(403))
async def search_templates(
    principal: Reader,
    session: Session,
    select_filters: Annotated[str | None, Query(max_length=8192)] = None,
    select_cols: Annotated[str | None, Query(max_length=4096)] = None,
) -> Templates:
    """`vastai search templates`: the org's templates and the public ones, filtered by
    `select_filters` (`{"hash_id": {"eq": "…"}}`; ops eq neq in notin gt gte lt lte)."""
    try:
        query = json.loads(select_filters) if select_filters else {}
    except ValueError:
        raise InvalidRequest("select_filters is not JSON", param="select_filters") from None
    found = await templates.search_templates(session, org_id=principal.org_id)
    numbers: dict[str, int] = {}
    rows = []
    for t in found:
        if t.org_id not in numbers:
            numbers[t.org_id] = (await orgs.get_org(session, org_id=t.org_id)).number
        rows.append(VastTemplate.of(t, creator_number=numbers[t.org_id]))
    return Templates(templates=matching(rows, query))


@router.delete("/api/v0/template/", response_model=Message, responses=vast_errors(403, 404, 409))
async def delete_template(
    principal: Writer,
    session: Session,
    clock: ClockDep,
    body: Annotated[TemplateDelete | None, Body()] = None,
) -> Message:
    """`vastai delete template --hash-id H | --template-id N`."""
    given = body or TemplateDelete()
    await templates.delete_template(
        session,
        clock=clock,
        org_id=principal.org_id,
        hash_id=given.hash_id,
        number=given.template_id,
    )
    return Message(msg="template deleted")
