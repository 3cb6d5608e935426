"""``gpuyard up`` and ``gpuyard server``: prepare the database, then serve the API."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from pathlib import Path

import uvicorn
from rich.console import Console
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.agent.main import AgentOptions, run_agent
from gpuyard.agent.state import AgentState, StateError
from gpuyard.core.clock import SystemClock
from gpuyard.core.errors import Conflict
from gpuyard.server import operator_key
from gpuyard.server.app import create_app
from gpuyard.server.data_dir import private_dir
from gpuyard.server.db import create_engine, session_factory, write_session
from gpuyard.server.migrate import migrate
from gpuyard.server.services import demo, join_tokens
from gpuyard.server.services.bootstrap import Bootstrap, ensure_operator
from gpuyard.server.settings import Settings

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
    """Migrate and make sure the operator org and key exist."""
    settings.prepare_data_dir()
    engine = create_engine(settings.resolved_database_url())
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        for attempt in range(3):
            try:
                async with write_session(sessions) as session:
                    return await ensure_operator(
                        session, clock=SystemClock(), admin_key=settings.admin_key
                    )
            except (IntegrityError, Conflict):  # another replica bootstrapped at the same moment
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")
    finally:
        await engine.dispose()


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


DEFAULT_LOCAL_GPUS = "Logical GPU:2"


def local_agent_dir(settings: Settings) -> Path:
    return settings.data_dir / "agent"


async def local_join_token(settings: Settings) -> str | None:
    """A join token for the local agent, only while it has never registered."""
    if (local_agent_dir(settings) / "host.json").exists():
        return None
    engine = create_engine(settings.resolved_database_url())
    try:
        async with write_session(session_factory(engine)) as session:
            token = await join_tokens.create(
                session, clock=SystemClock(), name="local agent (gpuyard up)", expires_at=None
            )
        return token.secret
    finally:
        await engine.dispose()


def local_agent_options(settings: Settings, gpus: str | None, token: str | None) -> AgentOptions:
    return AgentOptions(
        server_url=f"http://127.0.0.1:{settings.port}",
        join_token=token,
        gpus=gpus or DEFAULT_LOCAL_GPUS,
        state_dir=local_agent_dir(settings),
        address="127.0.0.1",
        name="local",
        wait_for_server=True,
    )


def rebind_local_agent(agent: AgentOptions) -> None:
    """Point the local agent's registration at this server when it was made under another port:
    its host record lives in this data dir's database, whichever port serves it now."""
    state = AgentState(agent.state_dir)
    try:
        saved = state.load_registration()
    except StateError:
        return  # the agent explains a damaged host.json itself
    if saved is not None and agent.server_url and saved.server_url != agent.server_url:
        state.save_registration(saved.model_copy(update={"server_url": agent.server_url}))


async def start_demo(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    """Once the local host has joined, create the demo clusters and say how to call them."""
    clock = SystemClock()
    for _ in range(600):
        async with sessions() as session:
            gpu_type = await demo.local_gpu_type(session)
        if gpu_type is not None:
            break
        await asyncio.sleep(0.5)
    else:
        console.print("[red]demo:[/red] the local agent did not join; no demo clusters")
        return
    async with write_session(sessions) as session:
        made = await demo.ensure_demo(session, clock=clock, gpu_type=gpu_type)
    if made:
        console.print(f"demo: deploying {', '.join(c.name for c in made)} on the local host")
    url = settings.resolved_public_url()
    console.print(
        "demo: once `gpuyard` lists them healthy (GET /v1/clusters), call them with the openai "
        f"SDK: OpenAI(base_url='{url}/v1', api_key=<a key>).embeddings.create("
        "model='all-MiniLM-L6-v2', input='hello') and .audio.speech.create(model='espeak-ng', "
        "voice='alloy', input='hello')"
    )


async def serve(
    settings: Settings, local_agent: AgentOptions | None = None, *, with_demo: bool = False
) -> None:
    """Serve the API (and run the local agent beside it) until Ctrl-C."""
    app = create_app(settings, migrate_on_start=False)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        lifespan="on",
        timeout_graceful_shutdown=10,
        timeout_keep_alive=max(15, int(settings.heartbeat_seconds * 3)),  # agents keep theirs
    )
    if settings.log_level.lower() != "debug":  # after uvicorn has set up its loggers
        logging.getLogger("uvicorn.access").addFilter(QuietHeartbeats())
    stop = asyncio.Event()
    agent_task = asyncio.create_task(run_agent(local_agent, stop)) if local_agent else None
    demo_task = (
        asyncio.create_task(start_demo(settings, app.state.ctx.sessions)) if with_demo else None
    )
    gc.collect()
    gc.freeze()  # what start-up made lives as long as the process: keep it out of collections
    try:
        await uvicorn.Server(config).serve()
    finally:
        stop.set()
        if demo_task is not None:
            demo_task.cancel()
        if agent_task is not None:
            try:
                await agent_task
            except Exception:
                logging.getLogger(__name__).exception("the local agent failed")


def use_fast_event_loop() -> None:
    """uvloop where installed (it comes with uvicorn[standard]); asyncio's own loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class QuietHeartbeats(logging.Filter):
    """Heartbeats arrive every few seconds from every host: keep them out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "/v1/agent/heartbeat" not in record.getMessage()


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if level.lower() != "debug":
        logging.getLogger("httpx").setLevel(logging.WARNING)


def run_server(
    settings: Settings,
    *,
    local_gpus: str | None = None,
    with_agent: bool = False,
    with_demo: bool = False,
) -> None:
    configure_logging(settings.log_level)
    settings = check_settings(settings)
    operator_key.clear_environment()  # before anything is started: nothing inherits the key
    boot = asyncio.run(prepare(settings))
    announce(settings, boot)
    agent = None
    if with_agent:
        token = asyncio.run(local_join_token(settings))
        agent = local_agent_options(settings, local_gpus, token)
        rebind_local_agent(agent)
        console.print(
            f"Local agent: state in {agent.state_dir}; GPUs from NVML, else {agent.gpus!r} "
            "(choose with --gpus)."
        )
    use_fast_event_loop()
    asyncio.run(serve(settings, agent, with_demo=with_demo and agent is not None))
