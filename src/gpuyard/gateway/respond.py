"""Answering the client over ASGI: a ``Relay`` sent as ASGI messages, with the client watched
throughout, so that a client who goes away cancels its request at once, whether the gateway is
still waiting for the replica or streaming its answer. The cancel reaches the code that holds
the replica's connection (proxy.py, relay.py), which closes it and logs the request as ended by
the client.

This is the inference routes' short path (served in front of the web framework, see
server/middleware/hot_routes.py): one task watching the connection instead of a task group, one
ASGI message per upstream read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from gpuyard.gateway.relay import Relay
from gpuyard.server.middleware.asgi import Receive, Send


async def respond(
    receive: Receive,
    send: Send,
    relay: Callable[[], Awaitable[Relay]],
    *,
    started: Callable[[], None],
    later: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    """Send what ``relay()`` answers; ``started()`` is called once the answer has begun (an
    error after it can no longer be an HTTP status). Exceptions from ``relay()`` propagate, for
    the caller to answer as errors; a client that went away ends it quietly. A stream answered
    to its end is closed (logged, its usage counted) through ``later``: after the client has
    had its last piece, not before."""
    task = asyncio.current_task()
    assert task is not None
    watching = True
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        if watching:  # not once the answer is complete: uvicorn says "disconnect" then too
            gone = True
            task.cancel()

    watcher = asyncio.create_task(watch())
    stream: AsyncIterator[bytes] | None = None
    answered = False
    try:
        answer = await relay()
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
        if answer.stream is None:
            body = answer.body or b""
            headers.append((b"content-length", str(len(body)).encode()))
            watching = False
            started()
            await send({"type": "http.response.start", "status": answer.status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        stream, end = answer.stream, answer.end
        chunk = await anext(stream, None)  # before the head: both then leave together
        started()
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        while chunk is not None:
            last = end is not None and end.reached  # the answer ends with this piece
            if last:
                watching = False
            await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            if last:
                answered = True
                return
            chunk = await anext(stream, None)
        watching = False
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        answered = True
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()  # the client went away: nothing is left to answer
    finally:
        watching = False
        watcher.cancel()
        if stream is not None:
            if answered:
                later(_close(stream))
            else:
                await _close(stream)


async def _close(stream: AsyncIterator[bytes]) -> None:
    """Close a stream left unfinished (its ``finally`` releases the replica and logs)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
