"""``--workers N``: the API served by N worker processes on one port, watched by their parent.

The parent has checked the port, migrated the database, made the operator key and erased it
from the environment (serve.py); it serves no request itself. It binds one listening socket per
worker on that port with ``SO_REUSEPORT`` (Linux then spreads new connections evenly over them)
and starts each worker as ``python -m gpuyard.cli.api_worker`` (api_worker.py): a fresh
interpreter, so nothing of the parent's threads, event loop or connections is inherited, that
inherits its listening socket and its end of a socket pair (worker_channel.py), in a session of
its own, so that a terminal's Ctrl-C reaches the parent alone and the workers stop in the
parent's order. docs/configuration.md says why this way and not uvicorn's ``workers=`` or one
shared socket.

Then the parent:

- runs ``gpuyard up``'s local agent, once, from when a worker serves, and tells every worker
  when the local host has joined (their ``/readyz`` waits for it);
- passes each worker's changes to what a host runs on to the others (``wake``), so an agent's
  wait is answered whichever worker holds it;
- starts a new worker in place of one that exits while serving (killed, out of memory), and
  stops them all if one exits before it served (a start-up failure would only repeat);
- on the first SIGINT or SIGTERM stops the local agent (it reports its workloads stopped while
  the API still answers), then tells every worker to drain, waits for them and returns; on a
  second signal it tells them to stop at once, and kills any left after ``FORCE_KILL_S``.

A worker whose parent is gone (killed) sees its channel close, drains and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass

from rich.console import Console

from gpuyard.agent.main import AgentOptions
from gpuyard.cli.local_host import LocalHost
from gpuyard.cli.stopping import STOP_SIGNALS, interrupted, take_stop_signals
from gpuyard.cli.worker_channel import FORCE, JOINED, READY, STOP, WAKE, Channel
from gpuyard.server.db import create_engine, session_factory
from gpuyard.server.services.wakeups import Wakeups
from gpuyard.server.settings import Settings

log = logging.getLogger("gpuyard.cli")

WORKER_MODULE = "gpuyard.cli.api_worker"
FORCE_KILL_S = 5.0
BACKLOG = 2048  # uvicorn's


class WorkerFailed(Exception):
    """An API worker process exited before it served: the API cannot start."""


@dataclass(eq=False)
class Worker:
    index: int
    process: subprocess.Popen[bytes]
    channel: Channel
    ready: bool = False


class Supervisor:
    """The worker processes: started, told what the parent knows, replaced, stopped."""

    def __init__(
        self,
        settings: Settings,
        listeners: list[socket.socket],
        *,
        waits_for_local_host: bool,
    ) -> None:
        self._listeners = listeners  # worker ``i``'s is ``listeners[i - 1]``
        self._local_host = waits_for_local_host
        # Never the operator key: the workers do not need it, and it must reach no process.
        hello = settings.model_copy(update={"admin_key": None, "admin_key_file": None})
        self._hello = hello.model_dump_json().encode()
        self._workers: dict[int, Worker] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._joined = False
        self._stopping = False
        self._spawning = asyncio.Lock()
        self.failure: str | None = None
        self.failed = asyncio.Event()
        self.serving = asyncio.Event()  # a worker serves

    async def start(self) -> None:
        indices = range(1, len(self._listeners) + 1)
        await asyncio.gather(*(self._start(index) for index in indices))

    async def _start(self, index: int) -> None:
        argv = [sys.executable, "-m", WORKER_MODULE, "--index", str(index)]
        if self._local_host:
            argv.append("--local-host")
        listener = self._listeners[index - 1]
        async with self._spawning:  # the listener stays open until the worker holds it
            if self._stopping:
                return
            ours, theirs = socket.socketpair()
            try:
                process = await asyncio.to_thread(_spawn, argv, listener, theirs, self._hello)
            finally:
                theirs.close()
            worker = Worker(index, process, await Channel.over(ours))
            self._workers[index] = worker
        if self._joined:
            worker.channel.send(JOINED)
        log.info("API worker %d started (pid %d)", index, process.pid)
        watcher = asyncio.create_task(self._watch(worker), name=f"api worker {index}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, worker: Worker) -> None:
        async for word, args in worker.channel.messages():
            if word == READY:
                worker.ready = True
                self.serving.set()
            elif word == WAKE:
                self._tell(args, but=worker)
        code = await asyncio.to_thread(worker.process.wait)  # its channel closed: it is exiting
        worker.channel.close()
        if self._workers.get(worker.index) is worker:
            del self._workers[worker.index]
        how = _exit_status(code)
        if self._stopping:
            if code != 0:
                log.warning("API worker %d (pid %d) %s", worker.index, worker.process.pid, how)
            return
        if not worker.ready:
            self._fail(
                f"API worker {worker.index} (pid {worker.process.pid}) {how} before it served; "
                "its log is above"
            )
            return
        log.warning(
            "API worker %d (pid %d) %s while serving; starting another in its place",
            worker.index,
            worker.process.pid,
            how,
        )
        try:
            await self._start(worker.index)
        except OSError as exc:  # out of processes or memory: stop rather than serve on short
            self._fail(f"could not start API worker {worker.index} again: {exc}")

    def _fail(self, why: str) -> None:
        if self.failure is None:
            self.failure = why
            self.failed.set()

    def _tell(self, keys: list[str], *, but: Worker | None = None) -> None:
        for worker in list(self._workers.values()):
            if worker is not but:
                worker.channel.send(WAKE, *keys)

    def tell_workers(self, keys: set[str]) -> None:
        """A change committed in this process (the demo): every worker's controllers and agent
        waits hear of it."""
        self._tell(sorted(keys))

    def local_host_joined(self) -> None:
        self._joined = True
        for worker in list(self._workers.values()):
            worker.channel.send(JOINED)

    async def stop(self) -> None:
        """Tell every worker to drain; return once all have exited."""
        self._stopping = True
        async with self._spawning:
            for listener in self._listeners:  # this process's copies: the port closes with
                listener.close()  # the workers'
        for worker in list(self._workers.values()):
            worker.channel.send(STOP)
        while self._watchers:
            await asyncio.wait(set(self._watchers))

    def force(self) -> None:
        """Tell every worker to stop at once; kill what is left after ``FORCE_KILL_S``."""
        for worker in list(self._workers.values()):
            worker.channel.send(FORCE)
        asyncio.get_running_loop().call_later(FORCE_KILL_S, self._kill_all)

    def _kill_all(self) -> None:
        for worker in list(self._workers.values()):
            if worker.process.returncode is None:
                log.warning("API worker %d (pid %d) killed", worker.index, worker.process.pid)
                worker.process.kill()


def worker_listeners(listener: socket.socket, count: int) -> list[socket.socket]:
    """One listening socket per worker on the address ``listener`` has bound (which it
    replaces), all with ``SO_REUSEPORT``: Linux spreads new connections evenly over them, and a
    kept-alive connection stays with the worker it came to. A socket outlives its worker (the
    parent keeps it for the replacement), so connections sent to it wait instead of failing.
    Where ports are not shared that way, the workers share ``listener`` itself."""
    if not sys.platform.startswith("linux"):
        return [listener] * count
    address, family = listener.getsockname(), listener.family
    listener.close()  # bound, never listening: the port is free again at once
    made: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            made.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(BACKLOG)  # queued from now, also while its worker starts
    except OSError:
        for sock in made:
            sock.close()
        raise
    return made


def _spawn(
    argv: list[str], listener: socket.socket, channel: socket.socket, hello: bytes
) -> subprocess.Popen[bytes]:
    """Start a worker with the listener and its end of the channel, its settings on stdin.
    (subprocess itself, not the event loop's: uvloop's leaves open in the child every
    descriptor this process inherited.)"""
    fds = (listener.fileno(), channel.fileno())
    process = subprocess.Popen(
        [*argv, "--listen-fd", str(fds[0]), "--channel-fd", str(fds[1])],
        stdin=subprocess.PIPE,
        pass_fds=fds,
        start_new_session=True,
    )
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError):  # it died at once: its exit status tells
        process.stdin.write(hello)
        process.stdin.close()
    return process


def _exit_status(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


async def serve_workers(
    settings: Settings,
    listener: socket.socket,
    local_agent: AgentOptions | None,
    console: Console,
    *,
    with_demo: bool = False,
) -> None:
    """Serve the API from ``settings.workers`` processes (and run the local agent here) until
    SIGINT or SIGTERM. Raises ``WorkerFailed`` when a worker cannot start."""
    loop = asyncio.get_running_loop()
    try:
        listeners = worker_listeners(listener, settings.workers)
    except OSError as exc:
        raise WorkerFailed(f"cannot listen on {settings.host}:{settings.port}: {exc}") from None
    supervisor = Supervisor(settings, listeners, waits_for_local_host=local_agent is not None)
    wakeups = Wakeups()
    wakeups.relay_commits(supervisor.tell_workers)
    engine = create_engine(settings.resolved_database_url())  # for the demo; connects on use
    sessions = session_factory(engine, sync_session_class=wakeups.session_class())
    local = None
    if local_agent is not None:
        local = LocalHost(settings, local_agent, sessions, console, with_demo=with_demo)
    stopping = asyncio.Event()
    received: list[int] = []
    waits: set[asyncio.Task[object]] = set()

    def on_signal(sig: int) -> None:
        received.append(sig)
        name = signal.Signals(sig).name
        if len(received) == 1:
            log.info("%s: stopping (a second one stops at once)", name)
            stopping.set()
            return
        log.warning("second %s: stopping now", name)
        if local is not None:
            local.force()
        supervisor.force()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        if (early := interrupted()) is not None:  # came before the handlers, its exception lost
            on_signal(early)
        await supervisor.start()
        if local is not None:
            waits.add(asyncio.create_task(_run_local_host(local, supervisor)))
        waits |= {
            asyncio.create_task(stopping.wait()),
            asyncio.create_task(supervisor.failed.wait()),
        }
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if local is not None:
            await local.stop()  # its workloads are reported stopped while the API answers
        await supervisor.stop()
    finally:
        for task in waits:
            task.cancel()
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        take_stop_signals()
        await engine.dispose()
    if supervisor.failure is not None:
        raise WorkerFailed(supervisor.failure)


async def _run_local_host(local: LocalHost, supervisor: Supervisor) -> None:
    """Start the local agent once a worker serves (it would only retry before), and tell the
    workers when it has joined."""
    await supervisor.serving.wait()
    local.start()
    await local.joined.wait()
    supervisor.local_host_joined()
    await asyncio.Future()  # done only when cancelled: it is one of the waits for the stop
