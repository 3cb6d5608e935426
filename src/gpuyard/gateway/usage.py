"""Token usage from upstream answers: the ``usage`` object of a JSON body or of SSE chunks, and,
for a stream that ends without one (the replica died, the client left), the tokens counted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpuyard.gateway.json_values import NotJson, loads


@dataclass(frozen=True, slots=True)
class Counted:
    """What a request used: its tokens, and text to speech's characters."""

    input: int
    output: int
    characters: int


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


def json_or_none(body: bytes) -> Any:
    """The JSON value of a body, or None when it is not JSON."""
    try:
        return loads(body)
    except NotJson:
        return None


def usage_from_json(body: bytes) -> Usage | None:
    return usage_of(json_or_none(body))


def is_usage_only(obj: Any) -> bool:
    """The final chunk that ``stream_options.include_usage`` adds: usage and no choices."""
    return isinstance(obj, dict) and obj.get("usage") is not None and not obj.get("choices")


def generated_tokens(obj: Any) -> int:
    """Tokens in one stream chunk, counted as one per choice with new output (``content``,
    ``reasoning_content``, ``refusal``, ``tool_calls`` or a completion's ``text``; servers stream
    about a token a chunk): the estimate used when a stream ends without ``usage``."""
    choices = obj.get("choices") if isinstance(obj, dict) else None
    if not isinstance(choices, list):
        return 0
    count = 0
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if (
            isinstance(delta, dict)
            and (
                delta.get("content")
                or delta.get("reasoning_content")
                or delta.get("refusal")
                or delta.get("tool_calls")
            )
        ) or choice.get("text"):
            count += 1
    return count


@dataclass
class StreamUsage:
    """What a stream has used so far: its ``usage`` once the server sent one, else the
    completion tokens counted from the chunks passed on."""

    reported: Usage | None = None
    counted: int = 0

    def see(self, obj: Any) -> None:
        found = usage_of(obj)
        if found is not None:
            self.reported = found
        self.counted += generated_tokens(obj)

    def usage(self) -> Usage | None:
        if self.reported is not None:
            return self.reported
        return Usage(prompt_tokens=None, completion_tokens=self.counted) if self.counted else None
