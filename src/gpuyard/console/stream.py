"""A streamed call to the API: the answer's body as it is sent, piece by piece.

``httpx``'s ASGI transport (what ``Api`` uses) hands back a response only once the app has
finished it, so a token stream would arrive whole. Here the console calls the same ASGI app
itself: the request goes in through ``receive``, each ``http.response.body`` message comes out
of a queue as the API sends it, and leaving early (the browser went away) tells the API the
client disconnected, which ends the model server's stream too. The key goes as a Bearer header,
as from any script; nothing of it reaches the browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gpuyard.console.api import Api, refusal

_DONE = object()


@dataclass
class Streamed:
    """An answer whose head has arrived: its status, media type and the body still to come."""

    status: int
    media_type: str
    chunks: AsyncIterator[bytes]


async def post_stream(api: Api, path: str, body: dict[str, Any]) -> Streamed:
    """POST ``body`` to ``path``; a refusal (status >= 400) is raised as ``ApiError`` in the
    API's words, anything else comes back with its body still streaming."""
    content = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"console.invalid"),
            (b"authorization", f"Bearer {api.key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            (b"accept", b"text/event-stream"),
        ],
        "client": ("127.0.0.1", 0),
        "server": ("console.invalid", 80),
        "extensions": {},
    }
    queue: asyncio.Queue[Any] = asyncio.Queue()
    gone = asyncio.Event()
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": content, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await queue.put(message)

    async def run() -> None:
        try:
            await api.app(scope, receive, send)
        except Exception as exc:  # the API's own last word was sent; end the stream here
            await queue.put(exc)
        finally:
            await queue.put(_DONE)

    task = asyncio.create_task(run())
    start = await queue.get()
    if not isinstance(start, dict) or start.get("type") != "http.response.start":
        await _stop(task, gone)
        raise RuntimeError("the API answered without a response")
    headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
    status = int(start["status"])
    media = headers.get("content-type", "application/octet-stream").split(";")[0].strip()
    if status >= 400:
        whole = b"".join([piece async for piece in _pieces(queue)])
        await _stop(task, gone)
        raise refusal(status, whole, "refused")
    return Streamed(status, media, _relay(queue, task, gone))


async def _pieces(queue: asyncio.Queue[Any]) -> AsyncIterator[bytes]:
    while True:
        message = await queue.get()
        if message is _DONE or isinstance(message, Exception):
            return
        if message.get("type") == "http.response.body":
            if message.get("body"):
                yield bytes(message["body"])
            if not message.get("more_body", False):
                return


async def _relay(
    queue: asyncio.Queue[Any], task: asyncio.Task[None], gone: asyncio.Event
) -> AsyncIterator[bytes]:
    try:
        async for piece in _pieces(queue):
            yield piece
    finally:
        await _stop(task, gone)


async def _stop(task: asyncio.Task[None], gone: asyncio.Event) -> None:
    """The API's side ends: told the client left, then given a moment before it is cancelled."""
    gone.set()
    if not task.done():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), timeout=5)
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
