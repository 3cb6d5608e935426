"""Client commands for inference clusters: ``gpuyard clusters list|create|get|scale|update|delete``.

They call the native API (``/v1/orgs/{org}/clusters``), which takes the VectorLay seed's fields
(``name``, ``gpu_type``, ``replicas``, ``container``, ``env``) and gpuyard's own (``command``,
``port``, ``health_path``, ``models``, ``gpus_per_replica``, ``public``, ``autoscaling``).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gpuyard.cli.connection import ApiKey, Raw, Url, parse_env, run
from gpuyard.cli.output import show
from gpuyard.client import ApiError, Client

clusters = typer.Typer(
    help="Inference clusters: a container run as N replicas behind one endpoint.",
    no_args_is_help=True,
)

COLUMNS = [
    "id",
    "name",
    "status",
    "gpu_type",
    "replicas",
    "ready_replicas",
    "endpoint",
    "status_reason",
]

SHOWN = [*COLUMNS[:5], "autoscaling", *COLUMNS[5:]]  # ``get``, ``create``, ``update``

MinReplicas = Annotated[
    int | None,
    typer.Option(
        "--min-replicas", help="Autoscale: the fewest replicas (0 scales to zero when idle)."
    ),
]
MaxReplicas = Annotated[
    int | None,
    typer.Option("--max-replicas", help="Autoscale: the most replicas; turns the autoscaler on."),
]
TargetConcurrency = Annotated[
    float | None,
    typer.Option(
        "--target-concurrency", help="Autoscale: requests in flight one replica is meant to serve."
    ),
]
InactivityTimeout = Annotated[
    float | None,
    typer.Option(
        "--inactivity-timeout",
        help="Autoscale with --min-replicas 0: idle seconds before the last replica goes.",
    ),
]

ClusterId = Annotated[
    str, typer.Argument(metavar="CLUSTER_ID", help="The cluster's id (cl_…) or its name.")
]
Env = Annotated[
    list[str] | None,
    typer.Option("--env", "-e", metavar="NAME=VALUE", help="An environment variable; repeat."),
]
Command = Annotated[
    str | None,
    typer.Option(
        help="Shell command to run instead of the image's own (the process runtime runs only "
        "this); the port to serve on is in $PORT.",
    ),
]
HealthPath = Annotated[
    str | None,
    typer.Option("--health-path", help="Path a ready replica answers with 2xx, e.g. /health."),
]
Port = Annotated[
    int | None, typer.Option(help="Port the container serves on (docker runtime).", min=1)
]
Task = Annotated[
    str | None,
    typer.Option(
        help="What its models do: chat (listed by GET /v1/chat/models), completions, "
        "embeddings or speech.",
        show_default="not declared",
    ),
]
Models = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        help="A model it serves; repeat for several.",
        show_default="discovered from each ready replica's /v1/models",
    ),
]


async def _path(c: Client, cluster_ref: str = "") -> str:
    """The cluster's API path; a name is looked up among the org's clusters."""
    base = await c.org_path("clusters")
    if not cluster_ref:
        return base
    if cluster_ref.startswith("cl_"):
        return f"{base}/{cluster_ref}"
    cursor = None
    while True:
        page = await c.get(base, limit=100, cursor=cursor)
        for cluster in page["data"]:
            if cluster["name"] == cluster_ref:
                return f"{base}/{cluster['id']}"
        cursor = page.get("next_cursor")
        if not page.get("has_more") or not cursor:
            raise ApiError(404, "cluster_not_found", f"no cluster named {cluster_ref!r}", None)


def _drop_unset(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def _autoscaling(
    min_replicas: int | None,
    max_replicas: int | None,
    target: float | None,
    timeout: float | None,
) -> dict[str, Any] | None:
    """The ``autoscaling`` object the options give (None: none given); ``--max-replicas`` is
    what turns it on."""
    given = _drop_unset(
        {
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "target_concurrency": target,
            "inactivity_timeout": timeout,
        }
    )
    if given and max_replicas is None:
        raise typer.BadParameter("autoscaling needs --max-replicas", param_hint="--max-replicas")
    return given or None


def _shown(cluster: Any) -> Any:
    """The cluster with its autoscaling in a few words, for the table."""
    a = cluster.get("autoscaling") if isinstance(cluster, dict) else None
    if not a:
        return cluster
    words = f"{a['min_replicas']}-{a['max_replicas']}, {a['target_concurrency']:g} in flight each"
    return {**cluster, "autoscaling": words}


@clusters.command("list")
def list_clusters(url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
    """Your clusters with their status and endpoint."""

    async def call(c: Client) -> Any:
        return (await c.get(await _path(c), limit=100))["data"]

    show(run(url, api_key, call), COLUMNS, raw)


@clusters.command("create")
def create_cluster(
    name: Annotated[str, typer.Argument(help="A name, unique in your organization.")],
    gpu_type: Annotated[
        str,
        typer.Option(
            "--gpu-type", help="GPU type, e.g. rtx-4090 (`gpuyard offers search` lists them)."
        ),
    ],
    container: Annotated[
        str,
        typer.Option(
            help="Image to run, or a built-in worker: gpuyard/worker:embeddings, "
            "gpuyard/worker:chat, gpuyard/worker:tts."
        ),
    ],
    replicas: Annotated[int, typer.Option(help="How many replicas to keep healthy.", min=0)] = 1,
    env: Env = None,
    gpus_per_replica: Annotated[
        int, typer.Option("--gpus-per-replica", help="GPUs each replica gets.", min=1)
    ] = 1,
    command: Command = None,
    port: Port = None,
    health_path: HealthPath = None,
    model: Models = None,
    task: Task = None,
    public: Annotated[
        bool, typer.Option("--public", help="Serve every organization (operator only).")
    ] = False,
    min_replicas: MinReplicas = None,
    max_replicas: MaxReplicas = None,
    target_concurrency: TargetConcurrency = None,
    inactivity_timeout: InactivityTimeout = None,
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Deploy a cluster. It is `provisioning` until its replicas pass their health check, then
    `healthy` (watch with `gpuyard clusters get`). With --max-replicas the replica count follows
    the load (requests in flight) between --min-replicas and --max-replicas."""
    body = _drop_unset(
        {
            "name": name,
            "gpu_type": gpu_type,
            "replicas": replicas,
            "container": container,
            "env": parse_env(env),
            "gpus_per_replica": gpus_per_replica,
            "command": command,
            "port": port,
            "health_path": health_path,
            "models": model or None,
            "task": task,
            "public": public or None,
            "autoscaling": _autoscaling(
                min_replicas, max_replicas, target_concurrency, inactivity_timeout
            ),
        }
    )

    async def call(c: Client) -> Any:
        return await c.post(await _path(c), body)

    made = run(url, api_key, call)
    show(made if raw else _shown(made), SHOWN, raw)


@clusters.command("get")
def get_cluster(
    cluster_id: ClusterId, url: Url = None, api_key: ApiKey = None, raw: Raw = False
) -> None:
    """One cluster, with its replicas when printed with --raw."""

    async def call(c: Client) -> Any:
        return await c.get(await _path(c, cluster_id))

    found = run(url, api_key, call)
    show(found if raw else _shown(found), SHOWN, raw)


@clusters.command("scale")
def scale_cluster(
    cluster_id: ClusterId,
    replicas: Annotated[int, typer.Argument(help="The new number of replicas (0 stops it).")],
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Change how many replicas a cluster keeps."""

    async def call(c: Client) -> Any:
        return await c.request("PATCH", await _path(c, cluster_id), json={"replicas": replicas})

    show(run(url, api_key, call), COLUMNS, raw)


@clusters.command("update")
def update_cluster(
    cluster_id: ClusterId,
    replicas: Annotated[int | None, typer.Option(help="The new number of replicas.", min=0)] = None,
    container: Annotated[str | None, typer.Option(help="A new image.")] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            "-e",
            metavar="NAME=VALUE",
            help="The whole new environment (replaces the old one); repeat.",
        ),
    ] = None,
    command: Command = None,
    port: Port = None,
    health_path: HealthPath = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="The models it serves (replaces the list); repeat."),
    ] = None,
    min_replicas: MinReplicas = None,
    max_replicas: MaxReplicas = None,
    target_concurrency: TargetConcurrency = None,
    inactivity_timeout: InactivityTimeout = None,
    no_autoscaling: Annotated[
        bool, typer.Option("--no-autoscaling", help="Turn the autoscaler off (the count stays).")
    ] = False,
    task: Task = None,
    url: Url = None,
    api_key: ApiKey = None,
    raw: Raw = False,
) -> None:
    """Change a cluster. A new container, env, command, port or health path rolls its replicas
    over one at a time; what is not given stays as it is. Autoscaling options replace the whole
    autoscaling setting."""
    body = _drop_unset(
        {
            "replicas": replicas,
            "container": container,
            "env": parse_env(env) if env is not None else None,
            "command": command,
            "port": port,
            "health_path": health_path,
            "models": model,
            "autoscaling": _autoscaling(
                min_replicas, max_replicas, target_concurrency, inactivity_timeout
            ),
            "task": task,
        }
    )
    if no_autoscaling:
        if "autoscaling" in body:
            raise typer.BadParameter(
                "--no-autoscaling and autoscaling options", param_hint="--no-autoscaling"
            )
        body["autoscaling"] = None
    if not body:
        raise typer.BadParameter("give at least one thing to change", param_hint="options")

    async def call(c: Client) -> Any:
        return await c.request("PATCH", await _path(c, cluster_id), json=body)

    changed = run(url, api_key, call)
    show(changed if raw else _shown(changed), SHOWN, raw)


@clusters.command("delete")
def delete_cluster(
    cluster_id: ClusterId, url: Url = None, api_key: ApiKey = None, raw: Raw = False
) -> None:
    """Delete a cluster: its replicas drain, then stop; its status is `deleting` until then."""

    async def call(c: Client) -> Any:
        return await c.request("DELETE", await _path(c, cluster_id))

    show(run(url, api_key, call), COLUMNS, raw)
