"""Clusters: ``/v1/orgs/{org_id}/clusters`` (native) and ``/v1/clusters`` (VectorLay: the key's
org). Both are the same handlers over services/clusters.py."""

from __future__ import annotations

from fastapi import APIRouter, status

from gpuyard.core.clusters import Cluster
from gpuyard.core.principal import Principal, Scope
from gpuyard.server.deps import Caller, ClockDep, OrgMember, Session, SettingsDep, require
from gpuyard.server.routers.params import DEFAULT, Cursor, Limit
from gpuyard.server.schemas.clusters import ClusterCreate, ClusterOut, ClusterUpdate
from gpuyard.server.schemas.common import PageOut, errors
from gpuyard.server.services import clusters
from gpuyard.server.services.clusters import ClusterSpec
from gpuyard.server.settings import Settings

native = APIRouter(prefix="/v1/orgs/{org_id}/clusters", tags=["clusters"])
vectorlay = APIRouter(prefix="/v1/clusters", tags=["clusters (VectorLay)"])


def _out(c: Cluster, settings: Settings) -> ClusterOut:
    url = clusters.endpoint_url(
        slug=c.slug,
        public_url=settings.resolved_public_url(),
        endpoint_domain=settings.endpoint_domain,
    )
    return ClusterOut.of(c, url)


async def _create(org_id: str, body: ClusterCreate, session: Session, clock: ClockDep) -> Cluster:
    spec = ClusterSpec(
        name=body.name,
        gpu_type=body.gpu_type,
        replicas=body.replicas,
        container=body.container,
        env=body.env,
        command=body.command,
        gpus_per_replica=body.gpus_per_replica,
        port=body.port,
        health_path=body.health_path,
        models=tuple(body.models),
        public=body.public,
        autoscaling=body.autoscaling.settings() if body.autoscaling else None,
        task=body.task,
    )
    return await clusters.create_cluster(session, clock=clock, org_id=org_id, spec=spec)


def _writer(principal: Principal) -> str:
    require(principal, Scope.WRITE)
    return principal.org_id


def _reader(principal: Principal) -> str:
    require(principal, Scope.READ)
    return principal.org_id


@native.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ClusterOut,
    responses=errors(403, 404, 409),
)
async def create_cluster(
    org_id: str,
    body: ClusterCreate,
    principal: OrgMember,
    session: Session,
    clock: ClockDep,
    settings: SettingsDep,
) -> ClusterOut:
    """Deploy a container on `replicas` GPUs of `gpu_type`; served at its `endpoint`."""
    return _out(await _create(org_id, body, session, clock), settings)


@vectorlay.post(
    "", status_code=status.HTTP_201_CREATED, response_model=ClusterOut, responses=errors(403, 409)
)
async def create_cluster_vl(
    body: ClusterCreate,
    principal: Caller,
    session: Session,
    clock: ClockDep,
    settings: SettingsDep,
) -> ClusterOut:
    """Create a cluster in the key's organization."""
    return _out(await _create(_writer(principal), body, session, clock), settings)


async def _list(
    org_id: str, session: Session, settings: Settings, limit: int, cursor: str | None
) -> PageOut[ClusterOut]:
    page = await clusters.list_clusters(session, org_id=org_id, limit=limit, cursor=cursor)
    return PageOut[ClusterOut](
        data=[_out(c, settings) for c in page.items],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )


@native.get("", response_model=PageOut[ClusterOut], responses=errors(403, 404))
async def list_clusters(
    org_id: str,
    principal: OrgMember,
    session: Session,
    settings: SettingsDep,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> PageOut[ClusterOut]:
    return await _list(org_id, session, settings, limit, cursor)


@vectorlay.get("", response_model=PageOut[ClusterOut], responses=errors(403))
async def list_clusters_vl(
    principal: Caller,
    session: Session,
    settings: SettingsDep,
    limit: Limit = DEFAULT,
    cursor: Cursor = None,
) -> PageOut[ClusterOut]:
    return await _list(_reader(principal), session, settings, limit, cursor)


@native.get("/{cluster_id}", response_model=ClusterOut, responses=errors(403, 404))
async def get_cluster(
    org_id: str, cluster_id: str, principal: OrgMember, session: Session, settings: SettingsDep
) -> ClusterOut:
    return _out(await clusters.get_cluster(session, org_id=org_id, cluster_id=cluster_id), settings)


@vectorlay.get("/{cluster_id}", response_model=ClusterOut, responses=errors(403, 404))
async def get_cluster_vl(
    cluster_id: str, principal: Caller, session: Session, settings: SettingsDep
) -> ClusterOut:
    c = await clusters.get_cluster(session, org_id=_reader(principal), cluster_id=cluster_id)
    return _out(c, settings)


async def _update(
    org_id: str, cluster_id: str, body: ClusterUpdate, session: Session, clock: ClockDep
) -> Cluster:
    return await clusters.update_cluster(
        session,
        clock=clock,
        org_id=org_id,
        cluster_id=cluster_id,
        changes=body.model_dump(exclude_unset=True),
    )


@native.patch("/{cluster_id}", response_model=ClusterOut, responses=errors(403, 404))
async def update_cluster(
    org_id: str,
    cluster_id: str,
    body: ClusterUpdate,
    principal: OrgMember,
    session: Session,
    clock: ClockDep,
    settings: SettingsDep,
) -> ClusterOut:
    """Scale with `replicas`; changing what runs rolls the replicas one at a time."""
    return _out(await _update(org_id, cluster_id, body, session, clock), settings)


@vectorlay.patch("/{cluster_id}", response_model=ClusterOut, responses=errors(403, 404))
async def update_cluster_vl(
    cluster_id: str,
    body: ClusterUpdate,
    principal: Caller,
    session: Session,
    clock: ClockDep,
    settings: SettingsDep,
) -> ClusterOut:
    return _out(await _update(_writer(principal), cluster_id, body, session, clock), settings)


@native.delete("/{cluster_id}", response_model=ClusterOut, responses=errors(403, 404))
async def delete_cluster(
    org_id: str,
    cluster_id: str,
    principal: OrgMember,
    session: Session,
    clock: ClockDep,
    settings: SettingsDep,
) -> ClusterOut:
    """Delete: replicas drain and stop; the cluster is gone once none is left."""
    c = await clusters.delete_cluster(session, clock=clock, org_id=org_id, cluster_id=cluster_id)
    return _out(c, settings)


@vectorlay.delete("/{cluster_id}", response_model=ClusterOut, responses=errors(403, 404))
async def delete_cluster_vl(
    cluster_id: str, principal: Caller, session: Session, clock: ClockDep, settings: SettingsDep
) -> ClusterOut:
    c = await clusters.delete_cluster(
        session, clock=clock, org_id=_writer(principal), cluster_id=cluster_id
    )
    return _out(c, settings)
