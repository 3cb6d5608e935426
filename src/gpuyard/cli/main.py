"""The ``gpuyard`` command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gpuyard import __version__
from gpuyard.agent.gpus import DEFAULT_LOCAL_GPUS
from gpuyard.cli import agent as agent_cli
from gpuyard.cli import billing as billing_cli
from gpuyard.cli import clusters, endpoints, fleet, market
from gpuyard.cli import worker as worker_cli
from gpuyard.cli.connection import ApiKey, Raw, Url, run
from gpuyard.cli.output import show
from gpuyard.client import Client

if TYPE_CHECKING:
    from gpuyard.server.settings import Settings

app = typer.Typer(
    name="gpuyard",
    help="A self-hostable GPU cloud. `gpuyard up` starts everything on this machine.",
    no_args_is_help=True,
    add_completion=False,
)

Host = Annotated[
    str | None,
    typer.Option(
        help="Address to listen on (0.0.0.0: every interface).",
        show_default="GPUYARD_HOST, else 127.0.0.1",
    ),
]
Port = Annotated[
    int | None,
    typer.Option(help="Port to listen on.", show_default="GPUYARD_PORT, else 8080"),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the SQLite database, admin-key, url and the local agent's state live.",
        show_default="GPUYARD_DATA_DIR, else ~/.gpuyard",
    ),
]

Workers = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=64,
        help="API worker processes sharing the port, each with its own event loop and "
        "controllers: more requests per second on a machine with more cores.",
        show_default="GPUYARD_WORKERS, else 1",
    ),
]


def _settings(
    host: str | None, port: int | None, data_dir: Path | None, workers: int | None = None
) -> Settings:
    from gpuyard.server.settings import Settings  # SQLAlchemy and the rest: for `up` and `server`

    overrides: dict[str, object] = {}
    if workers is not None:
        overrides["workers"] = workers
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if data_dir is not None:
        overrides["data_dir"] = data_dir.expanduser().resolve()
    return Settings(**overrides)  # type: ignore[arg-type]


def _run(
    settings: Settings,
    *,
    gpus: str | None = None,
    with_agent: bool = False,
    demo: bool = False,
    runtime: str = "auto",
) -> None:
    # The server's modules (FastAPI, SQLAlchemy, every router) are loaded by the commands that
    # serve, not by every client command: `gpuyard vms list` starts in a third of the time.
    from gpuyard.cli.serve import StartupError, console, run_server

    try:
        run_server(
            settings,
            local_gpus=gpus,
            with_agent=with_agent,
            with_demo=demo,
            local_runtime=runtime,
        )
    except StartupError as exc:
        console.print(f"[bold red]error:[/bold red] {exc}")
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        pass  # Ctrl-C while starting
    console.print("stopped")


@app.command()
def up(
    host: Host = None,
    port: Port = None,
    data_dir: DataDir = None,
    gpus: Annotated[
        str | None,
        typer.Option(
            metavar="NAME[:COUNT[:VRAM_MB]],...",
            help="GPUs the local agent declares where NVML finds none, e.g. 'RTX 4090:2'.",
            show_default=DEFAULT_LOCAL_GPUS,
        ),
    ] = None,
    workers: Workers = None,
    runtime: agent_cli.RuntimeOpt = agent_cli.RuntimeName.AUTO,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Also deploy an embeddings and a speech cluster of the built-in CPU workers "
            "and show their progress (needs the `workers` extra; ./scripts/up --demo installs "
            "it).",
        ),
    ] = False,
) -> None:
    """Start gpuyard on this machine: API, gateway, controllers and a local agent, on SQLite in
    the data dir. A one-host GPU cloud with nothing else to start.

    The first start creates the operator organization and prints its API key once (also saved to
    DATA_DIR/admin-key, mode 0600; GPUYARD_ADMIN_KEY=vl_... chooses it). The URL clients use is
    saved to DATA_DIR/url. GET /readyz answers 200 once the local host has joined.

    gpuyard up is one program: Ctrl-C (or SIGTERM) stops the workloads its local agent started,
    then the API. The next gpuyard up starts again the instances and replicas that should run.
    (A standalone `gpuyard agent` instead leaves its workloads running and re-adopts them.)
    With --workers N the API is served by N processes; the local agent still runs once.
    """
    _run(
        _settings(host, port, data_dir, workers),
        gpus=gpus,
        with_agent=True,
        demo=demo,
        runtime=runtime.value,
    )


@app.command()
def server(
    host: Host = None, port: Port = None, data_dir: DataDir = None, workers: Workers = None
) -> None:
    """Run one control-plane replica (no local agent). Use GPUYARD_DATABASE_URL for Postgres
    (postgresql+asyncpg://user@host/db) to run several behind a load balancer. --workers N
    serves it from N processes on one port. Ctrl-C or SIGTERM drains it and exits 0."""
    _run(_settings(host, port, data_dir, workers))


@app.command()
def me(url: Url = None, api_key: ApiKey = None, raw: Raw = False) -> None:
    """Who the API key is: its id, organization and scopes."""

    async def call(c: Client) -> Any:
        return await c.get("/v1/me")

    body = run(url, api_key, call)
    show(
        body if raw else {**body, "org": body["org"]["name"]},
        ["key_id", "org_id", "org", "scopes"],
        raw,
    )


agent_cli.register(app)
worker_cli.register(app)
app.add_typer(market.offers, name="offers")
app.add_typer(market.vms, name="vms")
app.add_typer(market.ssh_keys, name="ssh-keys")
app.add_typer(clusters.clusters, name="clusters")
app.add_typer(endpoints.endpoints, name="endpoints")
app.add_typer(endpoints.workergroups, name="workergroups")
app.add_typer(fleet.hosts, name="hosts")
app.add_typer(fleet.join_tokens, name="join-tokens")
app.add_typer(fleet.prices, name="prices")
app.add_typer(fleet.orgs, name="orgs")
app.add_typer(fleet.keys, name="keys")
app.add_typer(billing_cli.billing, name="billing")
app.command("usage")(billing_cli.usage)


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


if __name__ == "__main__":
    app()
