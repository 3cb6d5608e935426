"""Relaying a replica's answer to the client, in one of three ways chosen by what it answers:

- ``read_answer``: the whole body, for the non-streamed OpenAI endpoints. A 2xx answer of a JSON
  endpoint must be a JSON object, else the client gets 502 ``upstream_invalid_response``; a
  non-2xx answer that is not JSON is put in the OpenAI error shape with the replica's status.
- ``relay_events``: an SSE stream, each event checked (sse.py), the complete events of one
  upstream read sent on as one piece. A replica that dies or sends a malformed event ends the
  stream with an error event and ``data: [DONE]``.
- ``relay_bytes``: anything else under a cluster's endpoint, passed through untouched.

Each calls ``finish(status, usage, error)`` exactly once, before the replica's connection is
closed, and also when the client goes away (the stream is cancelled or closed), so every request
leaves a request-log row, with the usage of what was sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from gpuyard.gateway.openai_errors import error_json
from gpuyard.gateway.proxy import Upstream
from gpuyard.gateway.sse import DONE, Batch, MalformedEvent, SseEvents
from gpuyard.gateway.usage import (
    StreamUsage,
    Usage,
    is_usage_only,
    json_or_none,
    usage_from_json,
    usage_of,
)
from gpuyard.http1.client import HttpError

Finish = Callable[[int, Usage | None, str | None], None]
CLIENT_GONE = "the client disconnected"
JSON = {"content-type": "application/json"}
SSE = {"content-type": "text/event-stream", "cache-control": "no-cache"}
PASSED_ON = ("content-type", "cache-control")  # answer headers a proxied request keeps
KEEP_FOR_USAGE = 1 << 20  # a proxied JSON answer up to this size is read for its usage
_SHOWN = 200  # characters of an upstream error body kept in a message


@dataclass
class StreamEnd:
    """Set by a stream before it yields its last piece: the client's answer can end with that
    piece, in one write, instead of with an empty one after it."""

    at: float | None = None  # when it was reached (perf_counter): the request's latency ends

    @property
    def reached(self) -> bool:
        return self.at is not None


@dataclass
class Relay:
    status: int
    headers: dict[str, str]
    body: bytes | None = None
    stream: AsyncIterator[bytes] | None = None
    end: StreamEnd | None = None  # when the stream says which piece is its last


def bad_gateway(finish: Finish, message: str, code: str = "upstream_error") -> Relay:
    finish(502, None, message)
    return Relay(502, dict(JSON), body=error_json(502, message, code))


def is_event_stream(upstream: Upstream) -> bool:
    content_type = upstream.response.headers.get("content-type", "")
    return upstream.response.status_code == 200 and "text/event-stream" in content_type


async def read_answer(upstream: Upstream, *, expect_json: bool, finish: Finish) -> Relay:
    status = upstream.response.status_code
    content_type = upstream.response.headers.get("content-type", "application/json")
    try:
        body = await upstream.read_all()
    except HttpError as exc:
        return bad_gateway(
            finish, f"the model server failed while answering ({type(exc).__name__})"
        )
    except asyncio.CancelledError:
        finish(status, None, CLIENT_GONE)
        raise
    finally:
        await upstream.close()
    parsed = json_or_none(body)
    if 200 <= status < 300:
        if expect_json and not isinstance(parsed, dict):
            return bad_gateway(
                finish,
                "the model server answered with something other than a JSON object",
                "upstream_invalid_response",
            )
        finish(status, usage_of(parsed), None)
        return Relay(status, {"content-type": content_type}, body=body)
    text = body[:_SHOWN].decode(errors="replace")
    finish(status, None, text or f"the model server answered {status}")
    if parsed is None:
        message = f"the model server answered {status}: {text}".rstrip(": ")
        return Relay(status, dict(JSON), body=error_json(status, message, "upstream_error"))
    return Relay(status, {"content-type": content_type}, body=body)


async def relay_events(
    upstream: Upstream, *, strip_usage: bool, finish: Finish, end: StreamEnd | None = None
) -> AsyncIterator[bytes]:
    events = SseEvents(drop=is_usage_only if strip_usage else None)
    used = StreamUsage()
    done = False
    error: str | None = None
    passed: list[bytes] = []  # checked events not yet sent: the last read's go with the end
    seen: list[list[Any]] = []  # the data of events, counted once sent (off the client's wait)

    def take(batch: Batch) -> None:
        nonlocal done
        done = done or batch.done
        if batch.data:
            seen.append(batch.data)
        if batch.raw:
            passed.append(batch.raw)
        if batch.malformed is not None:
            raise batch.malformed

    def pending() -> bytes:
        joined = b"".join(passed)
        passed.clear()
        return joined

    def count() -> None:
        for data in seen:
            for obj in data:
                used.see(obj)
        seen.clear()

    try:
        try:
            async for chunk in upstream.chunks():
                take(events.feed(chunk))
                if passed and not upstream.response.ended:  # the last read goes with the end
                    yield pending()
                    count()
            take(events.end())
            if not done:
                error = "the model server ended the stream early"
        except HttpError as exc:
            error = f"the model server failed mid-stream ({type(exc).__name__})"
        except MalformedEvent as exc:
            error = f"the model server sent a malformed event: {exc}"
        except (asyncio.CancelledError, GeneratorExit):
            error = CLIENT_GONE
            raise
        rest = pending()  # the last events, or those before a malformed one
        if error is not None:
            rest += f"data: {error_json(502, error, 'upstream_error').decode()}\n\n".encode()
            rest += DONE
        if end is not None:
            end.at = time.perf_counter()
        if rest:
            yield rest
    finally:  # once the client has it all (or has gone): log it, release the replica
        count()
        finish(200, used.usage(), error)
        await upstream.close()


async def relay_bytes(upstream: Upstream, *, finish: Finish) -> AsyncIterator[bytes]:
    status = upstream.response.status_code
    kept: bytearray | None = None
    if "json" in upstream.response.headers.get("content-type", ""):
        kept = bytearray()
    error: str | None = None
    try:
        async for chunk in upstream.chunks():
            if kept is not None:
                kept += chunk
                if len(kept) > KEEP_FOR_USAGE:
                    kept = None
            yield chunk
    except HttpError as exc:
        error = f"the model server failed while answering ({type(exc).__name__})"
        raise  # the client sees a broken answer, never a cut one that looks whole
    except (asyncio.CancelledError, GeneratorExit):
        error = CLIENT_GONE
        raise
    finally:
        finish(status, usage_from_json(bytes(kept)) if kept else None, error)
        await upstream.close()


def passed_on_headers(upstream: Upstream) -> dict[str, str]:
    return {k: v for k, v in upstream.response.headers.items() if k.lower() in PASSED_ON}
