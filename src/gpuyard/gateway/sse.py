"""Server-sent events from a model server, split and checked one read at a time.

An event is passed on only when it is well formed: every line blank, a comment (``:``) or a
``data:``, ``event:``, ``id:`` or ``retry:`` field, and its data either ``[DONE]`` or JSON.
Anything else means the model server is broken (``MalformedEvent``); the gateway then ends the
stream with an error event and ``DONE`` instead of passing garbage to an SDK's parser.

This runs for every event streamed, so the usual event (one ``data:`` line) is checked without
building anything per event, and the events of one read are passed on as the bytes received,
unless one of them is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from gpuyard.gateway.json_values import NotJson, loads

DONE = b"data: [DONE]\n\n"
_FIELDS = (b"data:", b"event:", b"id:", b"retry:")
_SHOWN = 80  # bytes of a bad line quoted in the error


class MalformedEvent(Exception):
    """The model server sent something that is not an SSE event with JSON data."""


class Event(NamedTuple):
    raw: bytes  # as received, ending in a blank line
    data: Any  # the JSON of its data; None for [DONE] or an event without data
    done: bool  # ``data: [DONE]``


class Batch(NamedTuple):
    """What one read completed: the well-formed events to pass on and their data."""

    raw: bytes  # the events as received (less those dropped), each ending in a blank line
    data: list[Any]  # the JSON data of every well-formed event, dropped ones too, in order
    done: bool  # one of them was ``data: [DONE]``
    malformed: MalformedEvent | None  # the event after these was malformed: the stream is broken


def parse_event(raw: bytes) -> Event:
    """One event (``raw`` ends in its blank line), checked."""
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
    """Splits a byte stream into events (``…\\n\\n``), keeping a partial one for the next read.
    An event whose data ``drop`` says yes to is checked and counted but not passed on."""

    def __init__(self, drop: Callable[[Any], bool] | None = None) -> None:
        self._buffer = b""
        self._drop = drop

    def feed(self, chunk: bytes) -> Batch:
        """The events ``chunk`` completes; those before a malformed one are still passed on."""
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        buffer = self._buffer + chunk if self._buffer else chunk
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            self._buffer = buffer
            return Batch(b"", [], False, None)
        self._buffer = buffer[cut + 2 :]
        return self._check(buffer[: cut + 2])

    def end(self) -> Batch:
        """The last event, when the stream ended without its blank line."""
        rest, self._buffer = self._buffer.strip(b"\n"), b""
        return self._check(rest + b"\n\n")

    def _check(self, events: bytes) -> Batch:
        """``events``: whole events, ending in a blank line. They are passed on as received
        unless one is left out (dropped, or only extra blank lines); then what is kept."""
        data: list[Any] = []
        done = False
        kept: list[bytes] | None = None  # the events kept, once one is left out
        parts = events.split(b"\n\n")
        parts.pop()  # what follows the last blank line: nothing
        for i, part in enumerate(parts):
            obj, last, blank = None, False, False
            try:
                if part.startswith(b"data: ") and b"\n" not in part:  # the usual event
                    payload = part[6:]
                    if payload == b"[DONE]":
                        last = True
                    else:
                        obj = _json(payload)
                elif part.strip(b"\n"):
                    event = parse_event(part + b"\n\n")
                    obj, last = event.data, event.done
                else:
                    blank = True
            except MalformedEvent as exc:
                return Batch(_joined(parts[:i] if kept is None else kept), data, done, exc)
            done = done or last
            if obj is not None:
                data.append(obj)
            if blank or (obj is not None and self._drop is not None and self._drop(obj)):
                if kept is None:
                    kept = parts[:i]
            elif kept is not None:
                kept.append(part)
        return Batch(events if kept is None else _joined(kept), data, done, None)


def _joined(parts: list[bytes]) -> bytes:
    return b"".join(p + b"\n\n" for p in parts)
