"""Client commands for serverless endpoints and their workergroups:
``gpuyard endpoints list|create|get|update|workers|delete`` and
``gpuyard workergroups list|create|get|update|delete``, over the native API
(``/v1/orgs/{org}/endpoints``, ``/v1/orgs/{org}/workergroups``; docs/serverless.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gpuyard.cli.connection import ApiKey, Raw, Url, run
from gpuyard.cli.output import show
from gpuyard.client import ApiError, Client

endpoints = typer.Typer(
    help="Serverless endpoints: workers that follow the load, from zero.", no_args_is_help=True
)
workergroups = typer.Typer(
    help="Workergroups: what an endpoint's workers run, and on which GPUs.", no_args_is_help=True
)

COLUMNS = [
    "id",
    "number",
    "name",
    "state",
    "min_load",
    "target_util",
    "cold_workers",
    "max_workers",
    "inactivity_timeout",
    "api_key",
]
GROUP_COLUMNS = [
    "id",
    "number",
    "endpoint_id",
    "image",
    "gpu_type",
    "gpu_ram",
    "search_params",
    "status_reason",
]
WORKER_COLUMNS = ["id", "status", "perf", "cur_load", "reqs_working", "gpu_name", "error"]

EndpointId = Annotated[
    str, typer.Argument(metavar="ENDPOINT", help="The endpoint's id (ep_…), number or name.")
]
GroupId = Annotated[
    str, typer.Argument(metavar="WORKERGROUP", help="The workergroup's id (wg_…) or number.")
]
MinLoad = Annotated[
    float | None,
    typer.Option("--min-load", help="Load (perf units/s) kept served even when idle."),
]
TargetUtil = Annotated[
    float | None,
    typer.Option("--target-util", help="Share of active capacity to use, in (0, 1]."),
]
ColdMult = Annotated[
    float | None,
    typer.Option("--cold-mult", help="Loaded capacity as a multiple of the active target."),
]
ColdWorkers = Annotated[
    int | None,
    typer.Option("--cold-workers", min=0, help="Workers kept loaded but stopped, to start fast."),
]
MaxWorkers = Annotated[
    int | None, typer.Option("--max-workers", min=0, help="The most workers at any time.")
]
InactivityTimeout = Annotated[
    float | None,
    typer.Option(
        "--inactivity-timeout",
        help="Seconds without a request before the last worker stops (unset: never).",
    ),
]
LaunchArgs = Annotated[
    str | None,
    typer.Option(
        "--launch-args",
        help="What a worker runs, e.g. \"--image I --env '-p 8000:8000' --onstart-cmd C\".",
    ),
]
SearchParams = Annotated[
    str | None,
    typer.Option("--search-params", help="Where workers run, e.g. 'gpu_name=RTX_4090 num_gpus=1'."),
]
GpuRam = Annotated[float | None, typer.Option("--gpu-ram", help="GB of GPU memory a worker needs.")]


def _knobs(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None}


async def _endpoint_path(c: Client, ref: str = "") -> str:
    """The endpoint's API path; a name is looked up among the org's endpoints."""
    base = await c.org_path("endpoints")
    if not ref or ref.startswith("ep_") or ref.isdigit():
        return f"{base}/{ref}" if ref else base
    cursor = None
    while True:
        page = await c.get(base, limit=100, cursor=cursor)
        for ep in page["data"]:
            if ep["name"] == ref:
                return f"{base}/{ep['id']}"
        cursor = page.get("next_cursor")
        if not page.get("has_more") or not cursor:
            raise ApiError(404, "endpoint_not_found", f"no endpoint named {ref!r}", None)


@endpoints.command("list")
def list_endpoints(url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
    """Your endpoints and their knobs."""

    async def call(c: Client) -> Any:
        return (await c.get(await _endpoint_path(c), limit=100))["data"]

    show(run(url, api_key, call), COLUMNS, raw)


@endpoints.command("create")
def create_endpoint(
    name: Annotated[str, typer.Argument(help="A name, unique in your organization.")],
    min_load: MinLoad = None,
    target_util: TargetUtil = None,
    cold_mult: ColdMult = None,
    cold_workers: ColdWorkers = None,
    max_workers: MaxWorkers = None,
    inactivity_timeout: InactivityTimeout = None,
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Create an endpoint; add a workergroup to say what its workers run."""
    body = _knobs(
        name=name,
        min_load=min_load,
        target_util=target_util,
        cold_mult=cold_mult,
        cold_workers=cold_workers,
        max_workers=max_workers,
        inactivity_timeout=inactivity_timeout,
    )

    async def call(c: Client) -> Any:
        return await c.post(await _endpoint_path(c), body)

    show(run(url, api_key, call), COLUMNS, raw)


@endpoints.command("get")
def get_endpoint(
    endpoint: EndpointId, url: Url = None, api_key: ApiKey = None, raw: Raw = False
) -> None:
    """One endpoint."""

    async def call(c: Client) -> Any:
        return await c.get(await _endpoint_path(c, endpoint))

    show(run(url, api_key, call), COLUMNS, raw)


@endpoints.command("update")
def update_endpoint(
    endpoint: EndpointId,
    state: Annotated[str | None, typer.Option(help="active, suspended or stopped")] = None,
    min_load: MinLoad = None,
    target_util: TargetUtil = None,
    cold_workers: ColdWorkers = None,
    max_workers: MaxWorkers = None,
    inactivity_timeout: InactivityTimeout = None,
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Change an endpoint's knobs or state; what is not given stays as it is."""
    body = _knobs(
        state=state,
        min_load=min_load,
        target_util=target_util,
        cold_workers=cold_workers,
        max_workers=max_workers,
        inactivity_timeout=inactivity_timeout,
    )
    if not body:
        raise typer.BadParameter("give at least one thing to change", param_hint="options")

    async def call(c: Client) -> Any:
        return await c.request("PATCH", await _endpoint_path(c, endpoint), json=body)

    show(run(url, api_key, call), COLUMNS, raw)


@endpoints.command("workers")
def endpoint_workers(
    endpoint: EndpointId, url: Url = None, api_key: ApiKey = None, raw: Raw = False
) -> None:
    """The endpoint's workers, their state and measured perf."""

    async def call(c: Client) -> Any:
        return await c.get(await _endpoint_path(c, endpoint) + "/workers")

    show(run(url, api_key, call), WORKER_COLUMNS, raw)


@endpoints.command("delete")
def delete_endpoint(
    endpoint: EndpointId, url: Url = None, api_key: ApiKey = None, raw: Raw = False
) -> None:
    """Delete an endpoint: its workers drain (requests in flight finish), then stop."""

    async def call(c: Client) -> Any:
        return await c.request("DELETE", await _endpoint_path(c, endpoint))

    show(run(url, api_key, call), COLUMNS, raw)


@workergroups.command("list")
def list_groups(url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
    """Your workergroups."""

    async def call(c: Client) -> Any:
        return (await c.get(await c.org_path("workergroups"), limit=100))["data"]

    show(run(url, api_key, call), GROUP_COLUMNS, raw)


@workergroups.command("create")
def create_group(
    endpoint: EndpointId,
    launch_args: LaunchArgs = None,
    template_hash: Annotated[
        str | None, typer.Option("--template-hash", help="Run a template: its hash.")
    ] = None,
    search_params: SearchParams = None,
    gpu_ram: GpuRam = None,
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Add a workergroup to an endpoint: what its workers run and where."""

    async def call(c: Client) -> Any:
        ep = await c.get(await _endpoint_path(c, endpoint))
        body = _knobs(
            endpoint_id=ep["id"],
            launch_args=launch_args,
            template_hash=template_hash,
            search_params=search_params,
            gpu_ram=gpu_ram,
        )
        return await c.post(await c.org_path("workergroups"), body)

    show(run(url, api_key, call), GROUP_COLUMNS, raw)


@workergroups.command("get")
def get_group(group: GroupId, url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
    """One workergroup."""

    async def call(c: Client) -> Any:
        return await c.get(await c.org_path(f"workergroups/{group}"))

    show(run(url, api_key, call), GROUP_COLUMNS, raw)


@workergroups.command("update")
def update_group(
    group: GroupId,
    launch_args: LaunchArgs = None,
    search_params: SearchParams = None,
    gpu_ram: GpuRam = None,
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Change what a workergroup's new workers run or where; the rest stays."""
    body = _knobs(launch_args=launch_args, search_params=search_params, gpu_ram=gpu_ram)
    if not body:
        raise typer.BadParameter("give at least one thing to change", param_hint="options")

    async def call(c: Client) -> Any:
        return await c.request("PATCH", await c.org_path(f"workergroups/{group}"), json=body)

    show(run(url, api_key, call), GROUP_COLUMNS, raw)


@workergroups.command("delete")
def delete_group(group: GroupId, url: Url = None, api_key: ApiKey = None) -> None:
    """Delete a workergroup: its workers drain, then stop."""

    async def call(c: Client) -> Any:
        return await c.request("DELETE", await c.org_path(f"workergroups/{group}"))

    run(url, api_key, call)
    print(f"deleted {group}")
