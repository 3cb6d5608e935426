"""One API worker process of ``gpuyard server --workers N`` and ``gpuyard up --workers N``.

Its parent (supervisor.py) starts it as ``python -m gpuyard.cli.api_worker``: a fresh interpreter
that inherits the parent's listening socket and its end of a socket pair (their descriptor
numbers in its arguments) and reads its settings, as JSON, from its standard input. They never
hold the operator key: the parent has already migrated the database and made the key, and erased
it from the environment. The worker then serves the whole API, controllers included, on that
socket, as the one process of ``gpuyard server`` does, until its parent tells it to stop
(worker_channel.py), a signal sent to it does, or its parent is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import socket
import sys

from gpuyard.cli.api_process import configure_logging, use_fast_event_loop, uvicorn_config
from gpuyard.cli.local_host import LOCAL_HOST_GATE
from gpuyard.cli.stopping import GracefulServer, take_stop_signals
from gpuyard.cli.worker_channel import FORCE, JOINED, READY, STOP, WAKE, Channel
from gpuyard.server.app import create_app
from gpuyard.server.context import AppContext
from gpuyard.server.services.wakeups import Wakeups, is_host_key
from gpuyard.server.settings import Settings

log = logging.getLogger("gpuyard.cli")


async def serve_worker(
    settings: Settings,
    listener: socket.socket,
    channel_socket: socket.socket,
    *,
    waits_for_local_host: bool,
) -> None:
    """Serve the API on ``listener`` until told to stop."""
    channel = await Channel.over(channel_socket)
    app = create_app(settings, migrate_on_start=False)
    ctx: AppContext = app.state.ctx
    joined = asyncio.Event()
    if waits_for_local_host:
        ctx.startup.wait_for(LOCAL_HOST_GATE, joined)
    ctx.wakeups.relay_commits(lambda keys: _tell_parent(channel, keys))

    async def before_exit() -> None:
        ctx.wakeups.release_waits()

    server = GracefulServer(
        uvicorn_config(settings, app),
        before_exit=before_exit,
        on_started=lambda: channel.send(READY),
    )
    following = asyncio.create_task(_follow_parent(channel, server, ctx.wakeups, joined))
    gc.collect()
    gc.freeze()  # what start-up made lives as long as the process: keep it out of collections
    try:
        await server.serve(sockets=[listener])
    finally:
        following.cancel()
        channel.close()


def _tell_parent(channel: Channel, keys: set[str]) -> None:
    """Hosts whose agent may wait on another worker; a table's controllers here are already
    woken, and waking every worker's would only make them race for the same rows."""
    hosts = sorted(key for key in keys if is_host_key(key))
    if hosts:
        channel.send(WAKE, *hosts)


async def _follow_parent(
    channel: Channel, server: GracefulServer, wakeups: Wakeups, joined: asyncio.Event
) -> None:
    async for word, args in channel.messages():
        if word == JOINED:
            joined.set()
        elif word == WAKE:
            wakeups.fire(set(args))
        elif word == STOP:
            server.stop()
        elif word == FORCE:
            server.stop_now()
    if not server.should_exit:
        log.warning("the parent process is gone: stopping")
        server.stop()


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gpuyard.cli.api_worker",
        description="One API worker process; started by `gpuyard server --workers N`, with its "
        "settings as JSON on standard input.",
    )
    parser.add_argument("--index", type=int, required=True, help="its number, from 1")
    parser.add_argument("--listen-fd", type=int, required=True, help="the listening socket")
    parser.add_argument("--channel-fd", type=int, required=True, help="its end of the channel")
    parser.add_argument(
        "--local-host", action="store_true", help="/readyz waits for the parent's local agent"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    take_stop_signals()  # whatever the parent left: a signal before serving stops it too
    try:
        settings = Settings.model_validate_json(sys.stdin.buffer.read())
        configure_logging(settings.log_level, process=f"worker {args.index}")
        listener = socket.socket(fileno=args.listen_fd)
        channel = socket.socket(fileno=args.channel_fd)
        use_fast_event_loop()
        asyncio.run(serve_worker(settings, listener, channel, waits_for_local_host=args.local_host))
    except KeyboardInterrupt:
        pass  # stopped while starting
    return 0


if __name__ == "__main__":
    sys.exit(main())
