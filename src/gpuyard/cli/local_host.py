"""``gpuyard up``'s local host: the agent it runs beside the API, and the ``--demo`` clusters.

The local agent keeps its state in ``DATA_DIR/agent``, joins with a join token made on the first
start, and, unlike a standalone ``gpuyard agent``, stops the workloads it started when ``gpuyard
up`` stops (``stop_workloads_on_exit``); the next ``gpuyard up`` starts again those the server
still wants running.

``LocalHost`` runs the agent (and the demo) beside the API: in the API's own process, or under
``--workers N`` in the parent of the API's worker processes, so that it runs once.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.agent.gpus import DEFAULT_LOCAL_GPUS
from gpuyard.agent.main import AgentOptions, run_agent
from gpuyard.agent.runtimes.sandbox import SandboxConfig
from gpuyard.agent.state import AgentState, StateError
from gpuyard.core.clock import SystemClock
from gpuyard.server.db import create_engine, session_factory, write_session
from gpuyard.server.services import demo, join_tokens
from gpuyard.server.settings import Settings

LOCAL_HOST_GATE = "local host"
DEMO_WATCH_S = 1.0
DEMO_GIVE_UP_S = 30 * 60.0

log = logging.getLogger("gpuyard.cli")


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


def local_agent_options(
    settings: Settings, gpus: str | None, token: str | None, *, runtime: str = "auto"
) -> AgentOptions:
    return AgentOptions(
        runtime=runtime,
        server_url=f"http://127.0.0.1:{settings.port}",
        join_token=token,
        gpus=gpus or DEFAULT_LOCAL_GPUS,
        state_dir=local_agent_dir(settings),
        address="127.0.0.1",
        name="local",
        wait_for_server=True,
        stop_workloads_on_exit=True,
        sandbox=SandboxConfig(private=(str(settings.data_dir.absolute()),)),
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


class LocalHost:
    """The local agent running as a task of this process, and the demo once it has joined.
    ``joined`` is set once its first heartbeat has been answered."""

    def __init__(
        self,
        settings: Settings,
        agent: AgentOptions,
        sessions: async_sessionmaker[AsyncSession],
        console: Console,
        *,
        with_demo: bool = False,
    ) -> None:
        self.joined = asyncio.Event()
        self._settings = settings
        self._agent = agent
        self._sessions = sessions
        self._console = console
        self._with_demo = with_demo
        self._stop = asyncio.Event()
        self._agent_task: asyncio.Task[None] | None = None
        self._demo_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._agent_task = asyncio.create_task(
            run_agent(self._agent, self._stop, joined=self.joined)
        )
        self._agent_task.add_done_callback(_report_agent_failure)
        if self._with_demo:
            self._demo_task = asyncio.create_task(
                start_demo(self._settings, self._sessions, self.joined, self._console)
            )

    async def stop(self) -> None:
        """Stop the agent: it stops the workloads it started and reports them stopped (the API
        must still answer meanwhile). Idempotent."""
        if self._demo_task is not None:
            self._demo_task.cancel()
        self._stop.set()
        if self._agent_task is not None:
            await asyncio.wait({self._agent_task})

    def force(self) -> None:
        """Stop at once: the agent is cancelled wherever it is."""
        if self._agent_task is not None:
            self._agent_task.cancel()


def _report_agent_failure(task: asyncio.Task[None]) -> None:
    """Say at once when the local agent ends with an error (the API keeps serving, and /readyz
    answers 503 while the local host never joined)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the local agent stopped: %s", task.exception(), exc_info=task.exception())


DEMO_CALLS = {
    "demo-embeddings": ".embeddings.create(model='all-MiniLM-L6-v2', input='hello')",
    "demo-speech": ".audio.speech.create(model='espeak-ng', voice='alloy', input='hello')",
}


async def start_demo(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    joined: asyncio.Event,
    console: Console,
) -> None:
    """Once the local host has joined, create the demo clusters, then show each one's progress
    until it is healthy (with how to call it) or failed (with why)."""
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
        "demo: each worker loads its model first (a minute or so); progress follows, and "
        "`gpuyard clusters list` shows it too."
    )
    await watch_demo(settings, sessions, console)


async def watch_demo(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], console: Console
) -> None:
    """Print each demo cluster's status as it changes, until every one is healthy or failed
    (or ``DEMO_GIVE_UP_S`` passed); a healthy one with how to call it."""
    shown: dict[str, tuple[str, str | None]] = {}
    settled: set[str] = set()
    base = f"OpenAI(base_url='{settings.resolved_public_url()}/v1', api_key=<a key>)"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEMO_GIVE_UP_S
    while loop.time() < deadline:
        async with sessions() as session:
            states = await demo.demo_statuses(session)
        for name, (status, reason) in sorted(states.items()):
            if shown.get(name) == (status, reason) or name in settled:
                continue
            shown[name] = (status, reason)
            if status == "healthy":
                settled.add(name)
                call = DEMO_CALLS.get(name, "")
                console.print(f"demo: {name} is healthy; call it with the openai SDK: {base}{call}")
            elif status == "failed":
                settled.add(name)
                why = escape(reason or "see the log above")
                console.print(f"[red]demo:[/red] {name} failed: {why}")
            else:
                why = f" ({escape(reason)})" if reason else ""
                console.print(f"demo: {name} is {status}{why}")
        if states and settled >= set(states):
            return
        await asyncio.sleep(DEMO_WATCH_S)
    console.print("demo: still not settled; `gpuyard clusters list` shows where they are")
