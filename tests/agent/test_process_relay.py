"""The relay of a sandbox's published port on its own, no sandbox needed: run as the wrapper runs
it (``process_relay.py`` imported by path, serving an inherited socket, in a process of its own),
between real sockets on loopback and an inner server that each test controls."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

from gpuyard.agent.runtimes import process_relay

from .sandboxing import wait_listening

RUNS_THE_RELAY = """
import socket, sys
sys.path.insert(0, sys.argv[1])
import process_relay
process_relay.serve(socket.socket(fileno=int(sys.argv[2])), int(sys.argv[3]))
"""
RELAY_DIR = os.path.dirname(os.path.abspath(process_relay.__file__))
BODY = os.urandom(8 << 20)  # more than loopback's socket buffers hold: it has to keep flowing
DEADLINE_S = 20.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def relayed(handler: Handler) -> AsyncIterator[int]:
    """An inner server running ``handler`` and a relay to it; answers the port the relay listens
    on. The relay's own readiness probe and ``wait_listening`` reach ``handler`` too, each as a
    connection that closes without sending anything."""
    inner = await asyncio.start_server(handler, "127.0.0.1", 0)
    inner_port = inner.sockets[0].getsockname()[1]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))  # bound, not listening: the relay listens
    port = listener.getsockname()[1]
    relay = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-c",
        RUNS_THE_RELAY,
        RELAY_DIR,
        str(listener.fileno()),
        str(inner_port),
        pass_fds=(listener.fileno(),),
    )
    listener.close()
    try:
        async with inner:
            await wait_listening("127.0.0.1", port)
            yield port
    finally:
        relay.kill()
        await relay.wait()


async def test_a_large_body_crosses_whole_and_the_answer_comes_back() -> None:
    async def digests(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            body = await reader.readexactly(len(BODY))
            writer.write(hashlib.sha256(body).hexdigest().encode())
            await writer.drain()
        writer.close()

    async with relayed(digests) as port, asyncio.timeout(DEADLINE_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(BODY)
        await writer.drain()
        assert await reader.read() == hashlib.sha256(BODY).hexdigest().encode()
        writer.close()


async def test_an_answer_sent_before_the_body_is_read_arrives_and_the_body_still_crosses() -> None:
    """A server that refuses a body early answers, half-closes, then reads the rest (how servers
    avoid resetting a client that is still sending): the client gets the answer and its end of
    file while still sending, and the server gets the whole body and the client's end of file."""
    drained: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def answers_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"413 too large\n")
        writer.write_eof()
        received = 0
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(1 << 16):
                received += len(chunk)
        if received:  # not a probe
            drained.set_result(received)
        writer.close()

    async with relayed(answers_first) as port, asyncio.timeout(DEADLINE_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(BODY)
        await writer.drain()
        assert await reader.read() == b"413 too large\n"
        writer.close()
        assert await drained == len(BODY)


async def test_a_server_that_speaks_first_is_heard() -> None:
    """What the workload sends the moment it accepts (an SSH banner) is not lost while the relay
    is still connecting the two sides."""
    banner = b"SSH-2.0-workload\r\n"

    async def greets(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            await reader.read()
        writer.close()

    async with relayed(greets) as port, asyncio.timeout(DEADLINE_S):
        for _ in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await reader.readline() == banner
            writer.close()
