"""``gpuyard up``'s local host: the agent it runs beside the API, and the ``--demo`` clusters.

The local agent keeps its state in ``DATA_DIR/agent``, joins with a join token made on the first
start, and, unlike a standalone ``gpuyard agent``, stops the workloads it started when ``gpuyard
up`` stops (``stop_workloads_on_exit``); the next ``gpuyard up`` starts again those the server
still wants running.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.agent.gpus import DEFAULT_LOCAL_GPUS
from gpuyard.agent.main import AgentOptions
from gpuyard.agent.state import AgentState, StateError
from gpuyard.core.clock import SystemClock
from gpuyard.server.db import create_engine, session_factory, write_session
from gpuyard.server.services import demo, join_tokens
from gpuyard.server.settings import Settings

LOCAL_HOST_GATE = "local host"
DEMO_WATCH_S = 1.0
DEMO_GIVE_UP_S = 30 * 60.0


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
        stop_workloads_on_exit=True,
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


async def start_demo(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    joined: asyncio.Event,
    console: Console,
) -> None:
    """Once the local host has joined, create the demo clusters, then show their progress until
    each is healthy (or failed), and how to call them."""
    await joined.wait()
    async with sessions() as session:
        gpu_type = await demo.local_gpu_type(session)
    if gpu_type is None:
        console.print("[red]demo:[/red] the local host offers no GPU; no demo clusters")
        return
    async with write_session(sessions) as session:
        made = await demo.ensure_demo(session, clock=SystemClock(), gpu_type=gpu_type)
    if made:
        console.print(f"demo: deploying {', '.join(c.name for c in made)} on the local host")
    console.print(
        "demo: the first start installs the models (a minute or so); progress follows. "
        "`gpuyard clusters list` shows them too."
    )
    if await watch_demo(sessions, console):
        url = settings.resolved_public_url()
        console.print(
            "demo: ready. Call them with the openai SDK: "
            f"OpenAI(base_url='{url}/v1', api_key=<a key>).embeddings.create("
            "model='all-MiniLM-L6-v2', input='hello') and .audio.speech.create("
            "model='espeak-ng', voice='alloy', input='hello')"
        )


async def watch_demo(sessions: async_sessionmaker[AsyncSession], console: Console) -> bool:
    """Print each demo cluster's status as it changes; True once all are healthy, False when
    one failed or they took longer than ``DEMO_GIVE_UP_S``."""
    shown: dict[str, tuple[str, str | None]] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEMO_GIVE_UP_S
    while loop.time() < deadline:
        async with sessions() as session:
            states = await demo.demo_statuses(session)
        for name, (status, reason) in sorted(states.items()):
            if shown.get(name) != (status, reason):
                shown[name] = (status, reason)
                console.print(f"demo: {name} is {status}" + (f" ({reason})" if reason else ""))
        statuses = {status for status, _ in states.values()}
        if states and statuses == {"healthy"}:
            return True
        if "failed" in statuses:
            console.print("[red]demo:[/red] a demo cluster failed; see its reason above")
            return False
        await asyncio.sleep(DEMO_WATCH_S)
    console.print("[red]demo:[/red] the demo clusters are still not healthy; giving up watching")
    return False
