"""Token usage from upstream answers: the ``usage`` object of a JSON body or of SSE chunks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None


def usage_of(obj: Any) -> Usage | None:
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    return Usage(
        prompt_tokens=prompt if isinstance(prompt, int) else None,
        completion_tokens=completion if isinstance(completion, int) else None,
    )


def usage_from_json(body: bytes) -> Usage | None:
    try:
        return usage_of(json.loads(body))
    except (ValueError, UnicodeDecodeError):
        return None


class SseEvents:
    """Splits a byte stream into SSE events (``…\\n\\n``), keeping partial ones for later."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk.replace(b"\r\n", b"\n")
        *events, self._buffer = self._buffer.split(b"\n\n")
        return [e + b"\n\n" for e in events]

    def rest(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest


def event_json(event: bytes) -> Any:
    """The JSON of a ``data:`` event, or None (``[DONE]``, comments, malformed)."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            payload = line[5:].strip()
            if payload == b"[DONE]":
                return None
            try:
                return json.loads(payload)
            except (ValueError, UnicodeDecodeError):
                return None
    return None


def is_usage_only(obj: Any) -> bool:
    """The final chunk that ``stream_options.include_usage`` adds: usage and no choices."""
    return isinstance(obj, dict) and obj.get("usage") is not None and not obj.get("choices")
