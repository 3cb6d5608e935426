"""A chat completion as its caller received it, for keeping: a whole answer as it is, a stream
put together from its events (each choice's content in order, its role and finish reason, the
usage when the stream carried it)."""

from __future__ import annotations

import json
from typing import Any

from gpuyard.gateway.usage import json_or_none


def whole(body: bytes) -> dict[str, Any] | None:
    answer = json_or_none(body)
    if isinstance(answer, dict) and isinstance(answer.get("id"), str):
        return answer
    return None


def from_stream(raw: bytes) -> dict[str, Any] | None:
    first: dict[str, Any] | None = None
    contents: dict[int, list[str]] = {}
    roles: dict[int, str] = {}
    finish: dict[int, Any] = {}
    usage: Any = None
    for event in raw.split(b"\n\n"):
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                continue
            try:
                chunk = json.loads(data)
            except (ValueError, RecursionError):
                continue
            if not isinstance(chunk, dict) or not isinstance(chunk.get("id"), str):
                continue
            if first is None:
                first = chunk
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                if not isinstance(choice, dict):
                    continue
                index = choice.get("index", 0)
                index = index if isinstance(index, int) else 0
                delta = choice.get("delta") or {}
                if isinstance(delta, dict):
                    if isinstance(delta.get("content"), str):
                        contents.setdefault(index, []).append(delta["content"])
                    if isinstance(delta.get("role"), str):
                        roles[index] = delta["role"]
                if choice.get("finish_reason") is not None:
                    finish[index] = choice["finish_reason"]
    if first is None:
        return None
    indexes = sorted(set(contents) | set(finish) | set(roles))
    return {
        "id": first["id"],
        "object": "chat.completion",
        "created": first.get("created"),
        "model": first.get("model"),
        "choices": [
            {
                "index": i,
                "message": {
                    "role": roles.get(i, "assistant"),
                    "content": "".join(contents.get(i, [])),
                },
                "finish_reason": finish.get(i),
            }
            for i in indexes
        ],
        "usage": usage,
    }
