"""Server-sent events from a model server, split and checked one event at a time.

An event is passed on only when it is well formed: every line blank, a comment (``:``) or a
``data:``, ``event:``, ``id:`` or ``retry:`` field, and its data either ``[DONE]`` or JSON.
Anything else means the model server is broken (``MalformedEvent``); the gateway then ends the
stream with an error event and ``DONE`` instead of passing garbage to an SDK's parser.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from gpuyard.gateway.json_values import NotJson, loads

DONE = b"data: [DONE]\n\n"
_FIELDS = (b"data:", b"event:", b"id:", b"retry:")
_SHOWN = 80  # bytes of a bad line quoted in the error


class MalformedEvent(Exception):
    """The model server sent something that is not an SSE event with JSON data."""


class Event(NamedTuple):  # a tuple: made for every event streamed, so made cheaply
    raw: bytes  # as received, ending in a blank line
    data: Any  # the JSON of its data; None for [DONE] or an event without data
    done: bool  # ``data: [DONE]``


def parse_event(raw: bytes) -> Event:
    if raw.startswith(b"data: ") and raw.find(b"\n") == len(raw) - 2:
        payload = raw[6:-2]  # the usual event: one data line (a chunk, usage or [DONE])
        if payload == b"[DONE]":
            return Event(raw, None, True)
        return Event(raw, _json(payload), False)
    data: list[bytes] = []
    for line in raw.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        if not line.startswith(_FIELDS):
            raise MalformedEvent(f"not an SSE line: {line[:_SHOWN]!r}")
        if line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
    if not data:
        return Event(raw, None, False)
    payload = b"\n".join(data)
    if payload.strip() == b"[DONE]":
        return Event(raw, None, True)
    return Event(raw, _json(payload), False)


def _json(payload: bytes) -> Any:
    try:
        return loads(payload)
    except NotJson as exc:
        raise MalformedEvent(f"event data is not JSON: {payload[:_SHOWN]!r}") from exc


class SseEvents:
    """Splits a byte stream into events (``…\\n\\n``), keeping a partial one for the next chunk."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> Iterator[Event]:
        """The events ``chunk`` completes, one at a time: those before a malformed one are
        still passed on."""
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        *events, self._buffer = (self._buffer + chunk if self._buffer else chunk).split(b"\n\n")
        return (parse_event(e + b"\n\n") for e in events if e.strip(b"\n"))

    def end(self) -> Iterator[Event]:
        """The last event, when the stream ended without its blank line."""
        rest, self._buffer = self._buffer.strip(b"\n"), b""
        if rest:
            yield parse_event(rest + b"\n\n")
