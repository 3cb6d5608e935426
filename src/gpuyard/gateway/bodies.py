"""OpenAI request bodies, checked just enough to route them: a JSON object with a string
``model``, and per endpoint the one field no model server could answer without (``messages`` a
non-empty list of role objects, ``input``). Everything else is the model server's to judge.

For a stream of chat or text completions the gateway asks for usage
(``stream_options.include_usage``) and notes whether the client had asked, so that the extra
usage chunk can be dropped again on the way back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gpuyard.core.errors import InvalidRequest
from gpuyard.gateway.json_values import NotJson, loads

STREAMS_USAGE = ("chat/completions", "completions")
# The sampling ranges of the Vultr Inference API (and OpenAI's, where they overlap), checked
# for chat and text completions: a value outside is the caller's mistake, told at once.
SAMPLING_RANGES = {"temperature": (0, 2), "top_p": (0, 1), "top_k": (0, 100)}
MAX_SPEECH_INPUT = 2_000  # characters


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    endpoint: str
    model: str
    stream: bool
    upstream_body: bytes
    strip_usage: bool  # the gateway asked for a usage chunk the client did not want
    max_tokens: int | None = None  # the most output it asked for, if it said
    characters: int = 0  # text to speech: the characters of its input (charged by them)


def parse(endpoint: str, raw: bytes) -> InferenceRequest:
    body = json_object(raw)
    model = _check(endpoint, body)
    stream = bool(body.get("stream"))
    strip_usage = False
    if stream and endpoint in STREAMS_USAGE:
        options = body.get("stream_options") or {}
        if not options.get("include_usage"):
            strip_usage = True
            body["stream_options"] = {**options, "include_usage": True}
            raw = json.dumps(body).encode()
    characters = len(body["input"]) if endpoint == "audio/speech" else 0
    return InferenceRequest(
        endpoint, model, stream, raw, strip_usage, _max_tokens(body), characters
    )


def _max_tokens(body: dict[str, Any]) -> int | None:
    """``max_completion_tokens`` or ``max_tokens``, when a positive integer (else the model
    server's to judge)."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = loads(raw)
    except NotJson as exc:
        raise InvalidRequest("request body is not valid JSON", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_request")
    return body


def model_of(raw: bytes) -> str | None:
    """The ``model`` of a JSON body, if it has one (for the log of a proxied request)."""
    try:
        model = json_object(raw).get("model")
    except InvalidRequest:
        return None
    return model if isinstance(model, str) else None


def _check(endpoint: str, body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None or model == "":
        raise InvalidRequest(
            "you must provide a model parameter", param="model", code="missing_model"
        )
    if not isinstance(model, str):
        raise InvalidRequest("model must be a string", param="model", code="invalid_type")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequest("stream must be true or false", param="stream", code="invalid_type")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest(
            "stream_options must be an object", param="stream_options", code="invalid_type"
        )
    if endpoint == "chat/completions":
        messages = body.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
        ):
            raise InvalidRequest(
                "messages must be a non-empty list of {role, content} objects", param="messages"
            )
    if endpoint == "embeddings" and not isinstance(body.get("input"), str | list):
        raise InvalidRequest("input must be a string or a list", param="input")
    if endpoint == "audio/speech":
        text = body.get("input")
        if not isinstance(text, str):
            raise InvalidRequest("input must be a string", param="input")
        if len(text) > MAX_SPEECH_INPUT:
            raise InvalidRequest(
                f"input must be at most {MAX_SPEECH_INPUT} characters", param="input"
            )
    if endpoint in STREAMS_USAGE:
        _check_sampling(body)
    return model


def _check_sampling(body: dict[str, Any]) -> None:
    for name, (low, high) in SAMPLING_RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"{name} must be a number", param=name, code="invalid_type")
        if not low <= value <= high:  # NaN is in no range
            raise InvalidRequest(
                f"{name} must be between {low} and {high}", param=name, code="out_of_range"
            )
