"""``gpuyard agent``: run the host agent on a GPU machine. ``register(app)`` adds the command."""

from __future__ import annotations

import asyncio
import logging
import signal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from gpuyard.agent.gpus import parse_gpu_declaration
from gpuyard.agent.ports import DEFAULT_PORT_RANGE
from gpuyard.agent.runtimes.sandbox import SandboxConfig, SandboxMode
from gpuyard.agent.runtimes.sandbox_users import DEFAULT_UID_RANGE, UidRange
from gpuyard.agent.state import DEFAULT_STATE_DIR, StateError
from gpuyard.agent.transport import AgentRejected, ServerUnavailable, normalize_server_url
from gpuyard.cli.stopping import interrupted, take_stop_signals
from gpuyard.core.errors import Unavailable
from gpuyard.core.hosts import PortRange

if TYPE_CHECKING:
    from gpuyard.agent.main import AgentOptions

__all__ = ["agent", "register"]

console = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("gpuyard.agent")


class RuntimeName(StrEnum):
    AUTO = "auto"
    PROCESS = "process"
    DOCKER = "docker"


def _server(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize_server_url(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _gpus(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_gpu_declaration(value, seed="check")
    except ValidationError as exc:
        raise typer.BadParameter(f"{value!r}: {exc.errors()[0]['msg']}") from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def _port_range(value: str | PortRange) -> PortRange:
    if isinstance(value, PortRange):
        return value
    try:
        return PortRange.parse(value)
    except ValidationError as exc:
        raise typer.BadParameter(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _uid_range(value: str | UidRange) -> UidRange:
    if isinstance(value, UidRange):
        return value
    try:
        return UidRange.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _token(value: str | None) -> str | None:
    if value is not None and not 1 <= len(value.strip()) <= 200:
        raise typer.BadParameter("a join token is 1 to 200 characters")
    return value.strip() if value is not None else None


Server = Annotated[
    str | None,
    typer.Option(
        "--server",
        metavar="URL",
        callback=_server,
        help="The gpuyard server, e.g. https://gpu.example.com. Needed on the first start; "
        "later starts read it from the state dir.",
        show_default="the one in STATE_DIR/host.json",
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="GPUYARD_JOIN_TOKEN",
        show_envvar=True,
        callback=_token,
        help="Join token from the operator (gyj_...). Spent by the first registration; "
        "ignored once the host is registered.",
    ),
]
Gpus = Annotated[
    str | None,
    typer.Option(
        "--gpus",
        metavar="NAME[:COUNT[:VRAM_MB]],...",
        callback=_gpus,
        help='GPUs to offer where NVML finds none, e.g. "RTX 4090:2" (development, tests, '
        "machines without NVIDIA GPUs). Ignored when real GPUs are found.",
    ),
]
StateDir = Annotated[
    Path,
    typer.Option(
        "--state-dir",
        help="Where the agent keeps its registration and its workloads' records.",
    ),
]
RuntimeOpt = Annotated[
    RuntimeName,
    typer.Option(
        "--runtime",
        envvar="GPUYARD_RUNTIME",
        show_envvar=True,
        case_sensitive=False,
        help="How workloads run: docker (the engine at DOCKER_HOST, else the local socket), "
        "process, or auto (docker when that engine answers, else process).",
    ),
]
Ports = Annotated[
    PortRange,
    typer.Option(
        "--port-range",
        metavar="START-END",
        parser=_port_range,
        help="Host ports handed to workloads.",
    ),
]
Address = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Address the server and gateway dial to reach workloads on this host.",
        show_default="this host's outward address",
    ),
]
Name = Annotated[str | None, typer.Option("--name", help="A name for this host on the server.")]
SandboxOpt = Annotated[
    SandboxMode,
    typer.Option(
        "--sandbox",
        envvar="GPUYARD_SANDBOX",
        show_envvar=True,
        case_sensitive=False,
        help="Process runtime: run each workload in a bubblewrap sandbox. auto: where bubblewrap "
        "works; on: refuse to start without it; off: never. A host that does not isolate "
        "runs only the operator's workloads unless the operator marks it trusted.",
    ),
]
SandboxUids = Annotated[
    UidRange,
    typer.Option(
        "--sandbox-uids",
        metavar="START-END",
        envvar="GPUYARD_SANDBOX_UIDS",
        parser=_uid_range,
        help="Uids for sandboxed workloads, one each, when the agent runs as root (no "
        "/etc/passwd entries needed).",
    ),
]
SandboxReadOnly = Annotated[
    list[Path] | None,
    typer.Option(
        "--sandbox-read-only",
        metavar="PATH",
        help="A host path sandboxed workloads may read (model files, say); repeatable. The "
        "system, the agent's Python and gpuyard are readable already.",
    ),
]
LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]


def agent(
    server: Server = None,
    token: Token = None,
    gpus: Gpus = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    runtime: RuntimeOpt = RuntimeName.AUTO,
    port_range: Ports = DEFAULT_PORT_RANGE,
    address: Address = None,
    name: Name = None,
    sandbox: SandboxOpt = SandboxMode.AUTO,
    sandbox_uids: SandboxUids = UidRange.parse(DEFAULT_UID_RANGE),
    sandbox_read_only: SandboxReadOnly = None,
    log_level: LogLevel = "info",
) -> None:
    """Run the host agent: join this machine to a gpuyard server and run what it assigns.

    First start: gpuyard agent --server https://gpu.example.com --token gyj_... ;
    later starts need neither (both are kept in the state dir). Ctrl-C or SIGTERM stops the agent
    but not its workloads: the next start re-adopts them. Under systemd use KillMode=process.
    """
    take_stop_signals()  # stop the same way when started with SIGINT ignored (`… &`)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if log_level.lower() != "debug":
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per heartbeat otherwise
    # The agent itself (its runtimes, the Docker client) is loaded by this command only, not by
    # every `gpuyard` command.
    from gpuyard.agent.main import AgentOptions

    options = AgentOptions(
        server_url=server,
        join_token=token,
        gpus=gpus,
        state_dir=state_dir,
        runtime=runtime.value,
        port_range=port_range,
        address=address,
        name=name,
        sandbox=SandboxConfig(
            mode=sandbox,
            uids=sandbox_uids,
            read_only=tuple(str(p) for p in sandbox_read_only or ()),
        ),
    )
    try:
        asyncio.run(_main(options))
    except ServerUnavailable as exc:
        _fail(
            f"cannot reach the gpuyard server: {exc.reason}. Is it running, and is --server right?"
        )
    except AgentRejected as exc:
        _fail(f"the server refused this agent: {exc.message} ({exc.code}){_hint(exc)}")
    except (StateError, Unavailable, ValueError) as exc:
        _fail(str(exc))
    except (asyncio.CancelledError, KeyboardInterrupt):  # a second signal; one while starting
        console.print("stopped")


def register(app: typer.Typer) -> None:
    """Add ``gpuyard agent`` to ``app``."""
    app.command("agent")(agent)


async def _main(options: AgentOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        if stop.is_set() and main_task is not None:
            log.warning("second %s: stopping now", signal.Signals(signum).name)
            main_task.cancel()
            return
        log.info(
            "%s: stopping the agent; workloads keep running and are re-adopted at the next start",
            signal.Signals(signum).name,
        )
        stop.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    early = interrupted()  # a signal before these handlers whose exception was lost
    if early is not None:
        on_signal(early)
    from gpuyard.agent.main import run_agent

    try:
        await run_agent(options, stop)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _hint(exc: AgentRejected) -> str:
    if "join_token" in exc.code:
        return ". Ask the operator for a new join token (gpuyard join-tokens create)"
    if exc.status in (401, 403) or exc.code == "host_removed":
        return (
            ". If the host was removed, delete host.json in the state dir and join again with a "
            "new token"
        )
    return ""


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False)
    raise typer.Exit(1)
