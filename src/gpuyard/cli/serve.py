"""``gpuyard up`` and ``gpuyard server``: claim the port, prepare the database, then serve the API.

The order matters to a newcomer: the port is bound before anything is created (a port in use is
a one-line error that names ``--port``, and leaves no data dir and no key behind), then the
database is migrated and the operator key made, then the URL clients should use is recorded in
``DATA_DIR/url`` beside ``admin-key`` (the ``gpuyard`` client reads both), then the API serves.
How it stops is in ``stopping.py``; the local agent and the demo in ``local_host.py``.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import socket
from pathlib import Path

from rich.console import Console
from sqlalchemy.exc import IntegrityError

from gpuyard.agent.main import AgentOptions
from gpuyard.agent.runtimes.docker_client import docker_available
from gpuyard.cli.api_process import configure_logging, use_fast_event_loop, uvicorn_config
from gpuyard.cli.local_host import (
    LOCAL_HOST_GATE,
    LocalHost,
    local_agent_options,
    local_join_token,
    rebind_local_agent,
)
from gpuyard.cli.stopping import GracefulServer, interrupted, take_stop_signals
from gpuyard.cli.supervisor import WorkerFailed, serve_workers
from gpuyard.core.clock import SystemClock
from gpuyard.core.errors import Conflict
from gpuyard.server import operator_key
from gpuyard.server.app import create_app
from gpuyard.server.context import AppContext
from gpuyard.server.data_dir import private_dir
from gpuyard.server.db import create_engine, session_factory, write_session
from gpuyard.server.migrate import migrate
from gpuyard.server.services import prices
from gpuyard.server.services.bootstrap import Bootstrap, ensure_operator
from gpuyard.server.settings import Settings

URL_FILE = "url"

console = Console(stderr=True, soft_wrap=True)


class StartupError(Exception):
    """A misconfiguration that stops the server before it starts, with a message for the user."""


def check_settings(settings: Settings) -> Settings:
    """The settings with the operator's chosen key (from GPUYARD_ADMIN_KEY or the file
    GPUYARD_ADMIN_KEY_FILE names) checked and in ``admin_key``."""
    try:
        key = operator_key.chosen_key(settings)
    except operator_key.OperatorKeyError as exc:
        raise StartupError(str(exc)) from None
    return settings.model_copy(update={"admin_key": key})


async def prepare(settings: Settings) -> Bootstrap:
    """Migrate, record the default GPU price (once, before any API process starts) and make sure
    the operator org and key exist."""
    settings.prepare_data_dir()
    engine = create_engine(settings.resolved_database_url())
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        clock = SystemClock()
        await prices.configure_default(
            sessions, clock=clock, cents=settings.default_gpu_price_cents
        )
        for attempt in range(3):
            try:
                async with write_session(sessions) as session:
                    return await ensure_operator(session, clock=clock, admin_key=settings.admin_key)
            except (IntegrityError, Conflict):  # another replica bootstrapped at the same moment
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")
    finally:
        await engine.dispose()


def bind_listener(settings: Settings) -> socket.socket:
    """The API's listening socket, bound now so that a port in use stops the start before
    anything is created."""
    host = settings.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, settings.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {settings.port} on {host} is already in use (another gpuyard, or another "
                "program); choose another with --port (or GPUYARD_PORT), e.g. --port "
                f"{settings.port + 1}"
            ) from None
        raise StartupError(
            f"cannot listen on {host}:{settings.port}: {exc.strerror or exc}; choose another "
            "address with --host or another port with --port"
        ) from None
    sock.set_inheritable(False)
    return sock


def client_url(settings: Settings) -> str:
    """The URL a client on this machine uses: the public URL when set, else loopback for a
    wildcard listen address."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(settings.host)
    if host is None:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}"


def record_url(data_dir: Path, url: str) -> Path:
    """Write ``DATA_DIR/url``: where the ``gpuyard`` client finds this server."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / URL_FILE
    tmp = path.with_name(URL_FILE + ".tmp")
    tmp.write_text(url + "\n")
    os.replace(tmp, path)
    return path


def write_admin_key(data_dir: Path, secret: str) -> Path:
    private_dir(data_dir)
    path = data_dir / "admin-key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    os.chmod(path, 0o600)
    return path


def announce(settings: Settings, boot: Bootstrap) -> None:
    url = settings.resolved_public_url()
    db = settings.resolved_database_url()
    shown_db = db.split("@")[-1] if "@" in db else db
    console.print(f"[bold]gpuyard[/bold] API on [cyan]{url}[/cyan]  (database: {shown_db})")
    if boot.new_key and settings.admin_key:
        console.print(f"Operator key: {operator_key.source(settings)}.")
    elif boot.new_key:
        path = write_admin_key(settings.data_dir, boot.new_key)
        console.print(
            f"[bold yellow]Operator API key (shown once, also saved to {path}):[/bold yellow]"
        )
        print(boot.new_key, flush=True)
    else:
        console.print(
            f"Operator key: see {settings.data_dir / 'admin-key'} (from the first start)."
        )
    console.print(
        f'Try: curl -H "Authorization: Bearer $(cat {settings.data_dir / "admin-key"})" {url}/v1/me'
    )


async def serve(
    settings: Settings,
    listener: socket.socket,
    local_agent: AgentOptions | None = None,
    *,
    with_demo: bool = False,
) -> None:
    """Serve the API in this process (and run the local agent beside it) until SIGINT or
    SIGTERM."""
    app = create_app(settings, migrate_on_start=False)
    ctx: AppContext = app.state.ctx
    local = None
    if local_agent is not None:
        local = LocalHost(settings, local_agent, ctx.sessions, console, with_demo=with_demo)
        ctx.startup.wait_for(LOCAL_HOST_GATE, local.joined)
        local.start()

    async def before_exit() -> None:
        if local is not None:
            await local.stop()
        ctx.wakeups.release_waits()

    server = GracefulServer(
        uvicorn_config(settings, app),
        before_exit=before_exit,
        on_force=local.force if local is not None else None,
    )
    gc.collect()
    gc.freeze()  # what start-up made lives as long as the process: keep it out of collections
    try:
        await server.serve(sockets=[listener])
    finally:
        if local is not None:
            await local.stop()


def run_server(
    settings: Settings,
    *,
    local_gpus: str | None = None,
    with_agent: bool = False,
    with_demo: bool = False,
    local_runtime: str = "auto",
) -> None:
    """Start, serve until stopped, stop. Raises ``StartupError`` for what the user can fix."""
    take_stop_signals()
    configure_logging(settings.log_level, process="parent" if settings.workers > 1 else None)
    settings = check_settings(settings)
    operator_key.clear_environment()  # before anything is started: nothing inherits the key
    listener = bind_listener(settings)
    try:
        boot = asyncio.run(prepare(settings))
        announce(settings, boot)
        _stop_if_interrupted()
        path = record_url(settings.data_dir, client_url(settings))
        console.print(f"Clients on this machine find it through {path}.")
        agent = None
        if with_agent:
            token = asyncio.run(local_join_token(settings))
            agent = local_agent_options(settings, local_gpus, token, runtime=local_runtime)
            if local_runtime == "docker" and not asyncio.run(docker_available()):
                raise StartupError(
                    "--runtime docker: no Docker engine answers (is dockerd running, is "
                    "DOCKER_HOST right?); use --runtime process instead"
                )
            rebind_local_agent(agent)
            console.print(
                f"Local agent: {local_runtime} runtime, state in {agent.state_dir}; GPUs from "
                f"NVML, else {agent.gpus!r} (choose with --gpus). Stopping gpuyard up stops its "
                "workloads; the next start runs them again."
            )
        _stop_if_interrupted()
        use_fast_event_loop()
        demo = with_demo and agent is not None
        if settings.workers == 1:
            asyncio.run(serve(settings, listener, agent, with_demo=demo))
            return
        try:
            asyncio.run(serve_workers(settings, listener, agent, console, with_demo=demo))
        except WorkerFailed as exc:
            raise StartupError(str(exc)) from None
    finally:
        listener.close()


def _stop_if_interrupted() -> None:
    """Stop here if a signal came during start-up but its exception was lost on the way."""
    if interrupted() is not None:
        raise KeyboardInterrupt
