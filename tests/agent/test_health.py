"""Health checks against real local servers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from gpuyard.agent.health import check_http, check_tcp

ROUTES = {"/healthz": b"200 OK", "/moved": b"302 Found", "/sick": b"503 Service Unavailable"}


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await reader.readuntil(b"\r\n\r\n")
    path = request.split(b" ")[1].decode()
    if path == "/hang":
        await asyncio.sleep(30)
    status = ROUTES.get(path, b"404 Not Found")
    writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await writer.drain()
    writer.close()


@pytest.fixture
async def server_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port
        server.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_http_healthy_paths(server_port: int) -> None:
    assert await check_http("127.0.0.1", server_port, "/healthz")
    assert await check_http("127.0.0.1", server_port, "healthz")
    assert await check_http("127.0.0.1", server_port, "/moved")  # up, even if it redirects


async def test_http_unhealthy(server_port: int, closed_port: int) -> None:
    assert not await check_http("127.0.0.1", server_port, "/sick")
    assert not await check_http("127.0.0.1", server_port, "/missing")
    assert not await check_http("127.0.0.1", closed_port, "/healthz")
    assert not await check_http("127.0.0.1", server_port, "/hang", timeout_s=0.2)
    assert not await check_http("not a host", server_port, "/healthz")


async def test_tcp(server_port: int, closed_port: int) -> None:
    assert await check_tcp("127.0.0.1", server_port)
    assert not await check_tcp("127.0.0.1", closed_port)
