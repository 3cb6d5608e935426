"""The way into a sandboxed workload: its published port, relayed to ``127.0.0.1:PORT`` inside.

A sandbox has a network of its own (loopback only), so nothing outside can dial the workload,
and the workload can dial nothing outside. The agent binds the workload's host port in the
host's network and hands the socket down; ``process_wrapper.py`` runs ``serve()`` in a thread
inside the sandbox. A socket keeps the network it was made in, so the relay accepts on the host
side and connects on the sandbox side, one process and no extra hop through the agent, and it
keeps working while the agent restarts.

The socket starts bound but not listening, so a client is refused (as by a process that has not
started listening yet) until something accepts on ``127.0.0.1:PORT`` inside: only then does the
relay listen. A TCP health check therefore means what it meant without a sandbox.

The way out is narrower still: ``serve_to_server()`` listens on one loopback port inside the
sandbox and carries each connection over a Unix socket in the workload's ``run/`` directory to
the agent, which dials the one server it reports to and nothing else (``server_relay.py``). A
Unix socket is a file, not an address of a network, so it crosses the namespace; ``run/`` is
the wrapper's, out of the command's reach, so the loopback port is the command's only way to it.

Standard library only: the wrapper imports this by path, before anything of gpuyard.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable

READY_POLL_S = 0.02
BACKLOG = 512
_LOOPBACK = "127.0.0.1"


def serve(listener: socket.socket, port: int) -> None:
    """Relay connections of ``listener`` to ``127.0.0.1:port``; runs until the process ends."""
    _wait_until_listening(port)
    listener.listen(BACKLOG)
    asyncio.run(_serve(listener, lambda loop: loop.create_connection(Pipe, _LOOPBACK, port)))


def serve_to_server(listener: socket.socket, run_dir: str, name: str) -> None:
    """Relay connections of ``listener`` (listening on the sandbox's loopback) to the Unix socket
    ``name`` in ``run_dir``, where the agent relays them to its server; runs until the process
    ends. The socket is reached through ``/proc/self/fd``: a Unix socket's path is short, a
    workload's directory may not be."""
    directory = os.open(run_dir, os.O_PATH | os.O_DIRECTORY)
    path = f"/proc/self/fd/{directory}/{name}"
    asyncio.run(_serve(listener, lambda loop: loop.create_unix_connection(Pipe, path)))


def _wait_until_listening(port: int) -> None:
    while True:
        try:
            with socket.create_connection((_LOOPBACK, port), timeout=1.0):
                return
        except OSError:
            time.sleep(READY_POLL_S)


_connecting: set[asyncio.Task[None]] = set()  # strong references: a bare task may be collected


Dial = Callable[[asyncio.AbstractEventLoop], Awaitable[tuple[asyncio.BaseTransport, "Pipe"]]]
"""Opens the other side of one relayed connection."""


async def _serve(listener: socket.socket, dial: Dial) -> None:
    loop = asyncio.get_running_loop()
    listener.setblocking(False)
    server = await loop.create_server(lambda: Inbound(dial), sock=listener)
    async with server:
        await server.serve_forever()


class Pipe(asyncio.Protocol):
    """One side of a relayed connection; what it reads is written to ``peer``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Pipe | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer.transport if self.peer is not None else None
        if peer is not None and peer.can_write_eof() and not peer.is_closing():
            peer.write_eof()
        return bool(self.peer is not None and not self.peer.eof)  # half-closed until both end

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer.transport if self.peer is not None else None
        if peer is not None and not peer.is_closing():
            peer.close()

    # Flow control: a slow reader on one side pauses reading on the other.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class Inbound(Pipe):
    """A client's connection: reading waits until the other side is connected."""

    def __init__(self, dial: Dial) -> None:
        super().__init__()
        self._dial = dial

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._connect())
        _connecting.add(task)
        task.add_done_callback(_connecting.discard)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.transport is not None
        try:
            _, outbound = await self._dial(loop)
        except OSError:
            self.transport.abort()  # nothing listens on the other side: the client sees a reset
            return
        outbound.peer, self.peer = self, outbound
        if self.transport.is_closing():
            assert outbound.transport is not None
            outbound.transport.close()
            return
        self.transport.resume_reading()
