"""An unhandled error is a bug, but the client still gets the error envelope, nothing the request
wrote is kept, and the keep-alive connection stays open for the client's next request.

The client here is a plain HTTP/1.1 keep-alive connection on loopback: every request of a test
goes over the one socket, so a server that closed or reset the connection after the error fails
the request that follows it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import func, select

from gpuyard.server import orm
from gpuyard.server.deps import ClockDep, Session
from gpuyard.server.metrics import Metrics
from gpuyard.server.middleware.asgi import Receive, Scope, Send, send_bytes
from gpuyard.server.middleware.request_context import RequestContextMiddleware
from gpuyard.server.routers.fast_path import FastPath, FastRoute
from gpuyard.server.schemas.common import ErrorOut
from gpuyard.server.services import orgs
from tests.harness import Api, serve_app


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        parsed: dict[str, object] = json.loads(self.body)
        return parsed


class KeepAlive:
    """One HTTP/1.1 connection that every request goes over, answers read by Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(
        self, method: str, path: str, *, key: str, body: bytes = b"", content_type: str = ""
    ) -> Answer:
        head = [f"{method} {path} HTTP/1.1", "Host: test", f"Authorization: Bearer {key}"]
        if content_type:
            head.append(f"Content-Type: {content_type}")
        head.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        status_line, *lines = (
            (await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10))
            .decode("latin-1")
            .split("\r\n")
        )
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        data = await asyncio.wait_for(self.reader.readexactly(length), 10)
        return Answer(int(status_line.split()[1]), headers, data)


@asynccontextmanager
async def keep_alive(base_url: str) -> AsyncIterator[KeepAlive]:
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        yield KeepAlive(reader, writer)
    finally:
        writer.close()
        await writer.wait_closed()


def failing_routes() -> APIRouter:
    router = APIRouter()

    @router.get("/v1/test-failures/read")
    async def fail_reading() -> None:
        raise RuntimeError("kaboom while reading")

    @router.post("/v1/test-failures/write")
    async def fail_after_writing(session: Session, clock: ClockDep) -> None:
        await orgs.create_org(session, clock=clock, name="Never kept")
        await session.flush()
        raise KeyError("kaboom after writing")

    return router


async def count_orgs(api: Api) -> int:
    async with api.ctx.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(orm.Org)) or 0)


async def test_an_unhandled_error_answers_the_envelope_and_keeps_the_connection(api: Api) -> None:
    api.app.include_router(failing_routes())
    async with keep_alive(api.base_url) as conn:
        for _ in range(2):  # twice: the connection outlives more than one failure
            failed = await conn.request("GET", "/v1/test-failures/read", key=api.operator_key)
            assert failed.status == 500
            body = failed.json()
            assert body["code"] == "internal_error"
            assert "kaboom" not in json.dumps(body)
            assert body["request_id"] == failed.headers["x-request-id"]
            assert failed.headers.get("connection") != "close"

            after = await conn.request("GET", "/v1/me", key=api.operator_key)
            assert after.status == 200, after.body
            assert after.json()["org"]["id"] == api.operator_org  # type: ignore[index]


async def test_an_unhandled_error_after_a_write_keeps_nothing_and_keeps_the_connection(
    api: Api,
) -> None:
    api.app.include_router(failing_routes())
    before = await count_orgs(api)
    async with keep_alive(api.base_url) as conn:
        failed = await conn.request(
            "POST",
            "/v1/test-failures/write",
            key=api.operator_key,
            body=b"{}",
            content_type="application/json",
        )
        assert failed.status == 500 and failed.json()["code"] == "internal_error"
        created = await conn.request(
            "POST",
            "/v1/admin/orgs",
            key=api.operator_key,
            body=b'{"name": "Kept"}',
            content_type="application/json",
        )
        assert created.status == 201, created.body
    assert await count_orgs(api) == before + 1  # the failed request's org was rolled back


# --- the fast path, in the same front layers as in the app ---------------------------------------


async def lifespan_or_ok(scope: Scope, receive: Receive, send: Send) -> None:
    """What stands behind the fast path here: a lifespan, and 200 for anything else."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send_bytes(send, 200, b'{"ok": true}')


def fast_route(path: str, serve: Callable[[Scope, bytes, Receive, Send], Awaitable[None]]) -> Any:
    return FastRoute(
        method="POST",
        path=path,
        serve=serve,
        name=path.rsplit("/", 1)[-1],
        summary="",
        description="",
        tag="tests",
        request=BaseModel,
        answer={},
        errors={},
        error_model=ErrorOut,
    )


async def fail_at_once(scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
    raise RuntimeError("kaboom on the fast path")


async def fail_mid_answer(scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]}
    )
    await send({"type": "http.response.body", "body": b"12345", "more_body": True})
    raise RuntimeError("kaboom half way")


@asynccontextmanager
async def fast_path_server() -> AsyncIterator[str]:
    routes = [fast_route("/fast/fails", fail_at_once), fast_route("/fast/cut", fail_mid_answer)]
    app = RequestContextMiddleware(
        FastPath(lifespan_or_ok, routes=routes), max_body_bytes=1024, metrics=Metrics()
    )
    async with serve_app(app) as url:  # type: ignore[arg-type]
        yield url


async def test_an_unhandled_error_on_the_fast_path_answers_and_keeps_the_connection() -> None:
    async with fast_path_server() as url, keep_alive(url) as conn:
        for _ in range(2):
            failed = await conn.request("POST", "/fast/fails", key="k", body=b"{}")
            assert failed.status == 500 and failed.json()["code"] == "internal_error"
            assert "kaboom" not in failed.body.decode()
            assert failed.json()["request_id"] == failed.headers["x-request-id"]
            after = await conn.request("POST", "/other", key="k", body=b"{}")
            assert after.status == 200 and after.json() == {"ok": True}


async def test_an_answer_cut_short_closes_the_connection() -> None:
    """Half an answer must never pass for a whole one: the client sees the connection end."""
    async with fast_path_server() as url, keep_alive(url) as conn:
        with pytest.raises(asyncio.IncompleteReadError):
            await conn.request("POST", "/fast/cut", key="k", body=b"{}")
