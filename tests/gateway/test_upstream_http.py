"""The gateway's own HTTP/1.1 client for the replica hop, against real loopback servers: uvicorn
serving a small FastAPI app, and raw asyncio servers that answer byte for byte (framing, closes,
stalls). Nothing here sleeps for time: each test waits on an event, with a timeout."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from gpuyard.core.errors import Unavailable
from gpuyard.gateway.balancer import LeastOutstanding
from gpuyard.gateway.directory import Target
from gpuyard.gateway.proxy import Upstream, UpstreamFailed, open_upstream
from gpuyard.gateway.relay import StreamEnd, relay_events
from gpuyard.gateway.usage import Usage
from gpuyard.http1.client import (
    ConnectError,
    HttpClient,
    LocalProtocolError,
    ReadTimeout,
    RemoteProtocolError,
)
from tests.gateway.kit import dead_port
from tests.harness import serve_app

WAIT_S = 10  # the most a test waits for something that should happen at once
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Raw"], Awaitable[None]]


@dataclass
class Raw:
    """A raw HTTP server on loopback: ``handler`` serves each connection; what it saw is kept."""

    handler: Handler
    url: str = ""
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    ended: asyncio.Queue[int] = field(default_factory=asyncio.Queue)  # connections seen to close
    serving: set[asyncio.Task[Any]] = field(default_factory=set)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.serving.add(task)
        task.add_done_callback(self.serving.discard)
        self.connections += 1
        number = self.connections
        try:
            await self.handler(reader, writer, self)
        except ConnectionError:
            pass
        finally:
            writer.close()
            self.ended.put_nowait(number)

    async def request(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next request on a connection (head and body), or None once the client closed it."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[Raw]:
    raw = Raw(handler)
    server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)
    raw.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield raw
    finally:
        server.close()
        if raw.serving:  # each ends once the client has closed its connection
            await asyncio.wait(raw.serving, timeout=WAIT_S)
        for task in raw.serving:
            task.cancel()


@asynccontextmanager
async def client_of(**options: Any) -> AsyncIterator[HttpClient]:
    client = HttpClient(**options)
    try:
        yield client
    finally:
        await client.aclose()


def answers(*raw: bytes) -> Handler:
    """A handler answering the requests of a connection with ``raw`` in turn, then closing."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Raw) -> None:
        for answer in raw:
            if await s.request(reader) is None:
                return
            writer.write(answer)
            await writer.drain()
        await reader.read()  # until the client closes

    return handle


def fixed(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), b"".join(extra), body)


CHUNKED = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)


async def get(client: HttpClient, url: str, path: str = "/") -> tuple[int, bytes]:
    response = await client.request(url, "GET", path, [], b"")
    try:
        parts = []
        while piece := await response.read():
            parts.append(piece)
        return response.status_code, b"".join(parts)
    finally:
        response.close()


async def until(predicate: Callable[[], bool]) -> None:
    """Let the loop run until ``predicate`` holds (a close noticed, say), at most WAIT_S."""
    loop = asyncio.get_running_loop()
    held = loop.create_future()

    def check() -> None:
        if not held.done():
            if predicate():
                held.set_result(None)
            else:
                loop.call_soon(check)

    check()
    await asyncio.wait_for(held, WAIT_S)


def echo_app() -> FastAPI:
    app = FastAPI()
    app.state.hold = asyncio.Event()
    app.state.cut = asyncio.Event()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        client = request.client
        return {
            "port": client.port if client else None,
            "headers": dict(request.headers),
            "body": (await request.body()).decode(),
        }

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def pieces() -> AsyncIterator[bytes]:
            try:
                yield b"data: {}\n\n"
                await app.state.hold.wait()
                yield b"data: [DONE]\n\n"
            except BaseException:
                app.state.cut.set()
                raise

        return StreamingResponse(pieces(), media_type="text/event-stream")

    return app


async def test_a_keep_alive_connection_serves_sequential_requests() -> None:
    async with serve_app(echo_app()) as url, client_of() as client:
        seen = []
        for body in (b'{"n": 1}', b'{"n": 2}'):
            response = await client.request(
                url, "POST", "/echo", [(b"content-type", b"application/json"), (b"x-a", b"b")], body
            )
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            echo = json.loads(await response.read())
            assert await response.read() == b""
            response.close()
            seen.append(echo["port"])
            assert echo["body"] == body.decode()
            assert echo["headers"]["host"] == url.removeprefix("http://")
            assert (echo["headers"]["x-a"], echo["headers"]["content-length"]) == ("b", "8")
            assert client.idle(url) == 1
        assert seen[0] == seen[1]  # the same client port: one connection


async def test_an_idle_connection_the_server_closes_is_never_used_again() -> None:
    closed = asyncio.Event()

    async def answer_once(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Raw) -> None:
        await s.request(r)
        w.write(fixed(b"one"))
        await w.drain()
        if s.connections == 1:
            w.close()  # a keep-alive answer, then the server closes the idle connection
            closed.set()
            return
        await s.request(r)

    async with raw_server(answer_once) as raw, client_of() as client:
        assert await get(client, raw.url) == (200, b"one")
        await asyncio.wait_for(closed.wait(), WAIT_S)
        await until(lambda: client.idle(raw.url) == 0)  # noticed through connection_lost
        assert await get(client, raw.url) == (200, b"one")
        assert raw.connections == 2


@pytest.mark.parametrize(
    ("answer", "body", "pooled"),
    [
        (fixed(b"hello world"), b"hello world", True),
        (CHUNKED, b"hello world", True),
        (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nhello world", b"hello world", False),
        (b"HTTP/1.0 200 OK\r\n\r\nhello world", b"hello world", False),
        (fixed(b"bye", b"connection: close\r\n"), b"bye", False),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b"", True),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + fixed(b"after 100"), b"after 100", True),
    ],
    ids=["content-length", "chunked", "until-close", "http-1.0", "connection-close", "204", "100"],
)
async def test_bodies_of_every_framing(answer: bytes, body: bytes, pooled: bool) -> None:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Raw) -> None:
        while await s.request(r) is not None:
            w.write(answer)
            await w.drain()
            if not pooled:
                return  # the body ends with the connection, or the client closes it

    async with raw_server(handle) as raw, client_of() as client:
        status, got = await get(client, raw.url)
        assert (status, got) == (200 if body else 204, body)
        assert client.idle(raw.url) == (1 if pooled else 0)
        if not pooled:
            assert await asyncio.wait_for(raw.ended.get(), WAIT_S) == 1
        assert await get(client, raw.url) == (status, got)
        assert raw.connections == (1 if pooled else 2)


async def test_headers_are_lower_case_and_repeated_ones_joined() -> None:
    answer = fixed(b"{}", b"X-Thing: a\r\nx-thing: b\r\nContent-Type: application/json\r\n")
    async with raw_server(answers(answer)) as raw, client_of() as client:
        response = await client.request(raw.url, "GET", "/models?x=1", [(b"accept", b"*/*")], b"")
        assert response.headers == {
            "content-length": "2",
            "x-thing": "a, b",
            "content-type": "application/json",
        }
        response.close()
        host = raw.url.removeprefix("http://")
        assert raw.requests == [
            f"GET /models?x=1 HTTP/1.1\r\nhost: {host}\r\naccept: */*\r\n\r\n".encode()
        ]


async def test_a_server_dying_mid_body_is_a_remote_protocol_error() -> None:
    cut = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart of it"
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"
    for answer in (cut, chunked):

        async def handle(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Raw, answer: bytes = answer
        ) -> None:
            await s.request(r)
            w.write(answer)
            await w.drain()  # and close

        async with raw_server(handle) as raw, client_of() as client:
            response = await client.request(raw.url, "GET", "/", [], b"")
            assert await response.read() in (b"part of it", b"hello")
            with pytest.raises(RemoteProtocolError):
                await response.read()
            response.close()
            assert client.idle(raw.url) == 0


async def test_a_server_closing_without_answering() -> None:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Raw) -> None:
        await s.request(r)

    async with raw_server(handle) as raw, client_of() as client:
        with pytest.raises(RemoteProtocolError):
            await client.request(raw.url, "POST", "/", [], b"{}")
        async with raw_server(answers(b"garbage\r\n\r\n")) as garbage:
            with pytest.raises(RemoteProtocolError):
                await client.request(garbage.url, "GET", "/", [], b"")
            assert await asyncio.wait_for(garbage.ended.get(), WAIT_S) == 1


async def test_a_refused_connection_is_a_connect_error_and_the_next_replica_is_tried() -> None:
    dead = f"http://127.0.0.1:{dead_port()}"
    async with raw_server(answers(fixed(b"alive"))) as raw, client_of() as client:
        with pytest.raises(ConnectError):
            await client.request(dead, "GET", "/", [], b"")
        balancer = LeastOutstanding()
        down = Target("down", "c", "o", False, dead)
        up = Target("up", "c", "o", False, raw.url)
        balancer.acquire("up")  # so that the dead one is tried first
        upstream = await open_upstream(
            client=client,
            balancer=balancer,
            targets=[up, down],
            method="GET",
            path="/",
            headers=[],
            body=b"",
        )
        assert (upstream.target, upstream.tried, upstream.first) == (up, ["down", "up"], b"alive")
        await upstream.close()
        balancer.release("up")
        assert balancer.busy() == 0
        with pytest.raises(Unavailable):
            await open_upstream(
                client=client,
                balancer=balancer,
                targets=[down],
                method="GET",
                path="/",
                headers=[],
                body=b"",
            )
        assert balancer.busy() == 0


async def test_a_read_timeout_fails_the_request_and_closes_its_connection() -> None:
    async def stall(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Raw) -> None:
        await s.request(r)
        if s.connections == 2:
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
        await r.read()  # until the client gives up

    async with raw_server(stall) as raw, client_of(read_timeout=0.05) as client:
        with pytest.raises(ReadTimeout):  # waiting for the head
            await client.request(raw.url, "GET", "/", [], b"")
        assert await asyncio.wait_for(raw.ended.get(), WAIT_S) == 1
        response = await client.request(raw.url, "GET", "/", [], b"")
        assert await response.read() == b"half"
        with pytest.raises(ReadTimeout):  # waiting between pieces of the body
            await response.read()
        assert await asyncio.wait_for(raw.ended.get(), WAIT_S) == 2
        response.close()


async def test_closing_an_answer_mid_body_closes_its_connection() -> None:
    app = echo_app()
    async with serve_app(app) as url, client_of() as client:
        response = await client.request(url, "GET", "/stream", [], b"")
        assert await response.read() == b"data: {}\n\n"
        response.close()
        await asyncio.wait_for(app.state.cut.wait(), WAIT_S)  # the server saw its request end
        assert client.idle(url) == 0


async def test_idle_connections_expire_and_are_bounded() -> None:
    expiring = client_of(keepalive_expiry=0)
    async with raw_server(answers(fixed(b"x"), fixed(b"x"))) as raw, expiring as client:
        assert await get(client, raw.url) == (200, b"x")
        assert await get(client, raw.url) == (200, b"x")  # the idle one had expired
        assert raw.connections == 2
        assert await asyncio.wait_for(raw.ended.get(), WAIT_S) == 1

    all_in = asyncio.Event()

    async def together(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Raw) -> None:
        await s.request(r)
        if len(s.requests) == 3:
            all_in.set()
        await all_in.wait()  # three requests in flight at once, on three connections
        w.write(fixed(b"x"))
        await r.read()

    async with raw_server(together) as raw, client_of(max_idle=2) as client:
        three = await asyncio.wait_for(
            asyncio.gather(*(get(client, raw.url) for _ in "abc")), WAIT_S
        )
        assert three == 3 * [(200, b"x")] and raw.connections == 3
        assert client.idle(raw.url) == 2  # the oldest idle one was closed for the newest
        await asyncio.wait_for(raw.ended.get(), WAIT_S)


async def test_a_slow_reader_gets_every_byte() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB, well above the high-water mark
    async with raw_server(answers(fixed(body))) as raw, client_of(high_water=1024) as client:
        response = await client.request(raw.url, "GET", "/", [], b"")
        got = bytearray()
        while piece := await response.read():
            got += piece
            await asyncio.sleep(0)
        assert bytes(got) == body
        response.close()
        assert client.idle(raw.url) == 1


async def test_a_request_that_would_smuggle_is_refused() -> None:
    async with client_of() as client:
        for headers, path in (
            ([(b"x", b"a\r\nevil: 1")], "/"),
            ([(b"x\n", b"a")], "/"),
            ([], "/ HTTP/1.1\r\nevil: 1\r\n"),
            ([], "/caf\u00e9\u20ac"),  # not latin-1
        ):
            with pytest.raises(LocalProtocolError):
                await client.request("http://127.0.0.1:1", "GET", path, headers, b"")


async def test_a_failure_before_the_first_chunk_is_upstream_failed() -> None:
    async def die(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Raw) -> None:
        await s.request(r)
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await w.drain()

    async with raw_server(die) as raw, client_of() as client:
        balancer = LeastOutstanding()
        with pytest.raises(UpstreamFailed) as caught:
            await open_upstream(
                client=client,
                balancer=balancer,
                targets=[Target("r", "c", "o", False, raw.url)],
                method="POST",
                path="/v1/chat/completions",
                headers=[],
                body=b"{}",
            )
        assert caught.value.reason == (
            "the model server failed before its first chunk (RemoteProtocolError)"
        )
        assert balancer.busy() == 0


class Pieces:
    """An answer whose reads return ``pieces`` in turn (for the relay, without a server)."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)
        self.closed = False

    async def read(self) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""

    @property
    def ended(self) -> bool:
        return not self.pieces

    def close(self) -> None:
        self.closed = True


def event(n: int, usage: bool = False) -> bytes:
    data: dict[str, Any] = {"choices": [{"index": 0, "delta": {"content": f"t{n}"}}]}
    if usage:
        data = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    return f"data: {json.dumps(data)}\n\n".encode()


async def test_the_relay_sends_one_piece_per_upstream_read() -> None:
    answer = Pieces(
        event(1) + event(2)[:10], event(2)[10:] + event(3, usage=True) + b"data: [DONE]\n\n"
    )
    balancer = LeastOutstanding()
    balancer.acquire("r")
    upstream = Upstream(
        Target("r", "c", "o", False, "http://x:1"),
        answer,
        b"",
        balancer,  # type: ignore[arg-type]
    )
    finished: list[tuple[int, Usage | None, str | None]] = []
    end = StreamEnd()
    sent = []
    async for piece in relay_events(
        upstream, strip_usage=True, finish=lambda *a: finished.append(a), end=end
    ):
        sent.append((piece, end.reached))
    assert sent == [  # the usage chunk stripped; the last piece known as the last
        (event(1), False),
        (event(2) + b"data: [DONE]\n\n", True),
    ]
    assert finished == [(200, Usage(3, 2), None)]
    assert answer.closed and balancer.busy() == 0
