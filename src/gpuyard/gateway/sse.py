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


NOTHING = Batch(b"", [], False, None)


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
            return NOTHING
        self._buffer = buffer[cut + 2 :]
        return self._check(buffer[: cut + 2])

    def end(self) -> Batch:
        """The last event, when the stream ended without its blank line."""
        rest, self._buffer = self._buffer.strip(b"\n"), b""
        return self._check(rest + b"\n\n") if rest else NOTHING

    def _check(self, events: bytes) -> Batch:
        """``events``: whole events, ending in a blank line."""
        data: list[Any] = []
        done = False
        kept: list[bytes] | None = None  # once an event is dropped or irregular: what is kept
        parts = events.split(b"\n\n")
        parts.pop()  # what follows the last blank line: nothing
        for i, part in enumerate(parts):
            if part.startswith(b"data: ") and b"\n" not in part:  # the usual event
                payload = part[6:]
                if payload == b"[DONE]":
                    done = True
                    if kept is not None:
                        kept.append(part + b"\n\n")
                    continue
                try:
                    obj = loads(payload)
                except NotJson:
                    return self._broken(parts, i, kept, data, done)
                data.append(obj)
                if self._drop is not None and self._drop(obj):
                    if kept is None:
                        kept = [p + b"\n\n" for p in parts[:i]]
                    continue
                if kept is not None:
                    kept.append(part + b"\n\n")
                continue
            if kept is None:  # irregular: rebuilt event by event from here
                kept = [p + b"\n\n" for p in parts[:i]]
            if not part.strip(b"\n"):
                continue  # only extra blank lines
            try:
                event = parse_event(part + b"\n\n")
            except MalformedEvent as exc:
                return Batch(b"".join(kept), data, done, exc)
            done = done or event.done
            if event.data is not None:
                data.append(event.data)
                if self._drop is not None and self._drop(event.data):
                    continue
            kept.append(event.raw)
        return Batch(events if kept is None else b"".join(kept), data, done, None)

    def _broken(
        self, parts: list[bytes], i: int, kept: list[bytes] | None, data: list[Any], done: bool
    ) -> Batch:
        """Event ``i`` is a data line whose data is not JSON."""
        passed = kept if kept is not None else [p + b"\n\n" for p in parts[:i]]
        payload = parts[i][6:]
        problem = MalformedEvent(f"event data is not JSON: {payload[:_SHOWN]!r}")
        return Batch(b"".join(passed), data, done, problem)
