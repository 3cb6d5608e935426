"""The OpenAI-compatible inference bodies as the gateway checks them, and its error shape.

The gateway reads these bodies itself (gateway/bodies.py: a JSON object with a string
``model``, and per endpoint the one field no model server can answer without); everything else
is the model server's to judge, so every model here allows extra fields. The models say the
same thing for ``/openapi.json``, and tests/server/test_fast_path_contract.py holds the two to
one answer: a body is refused by one exactly when it is refused by the other.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1, description="A model one of your clusters serves")
    stream: bool = Field(default=False, description="Answer as server-sent events")
    stream_options: dict[str, Any] | None = Field(
        default=None, description="`include_usage` adds a last event with the token usage"
    )


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: str = Field(description="system, user, assistant, tool, …")


class _Sampling(_Body):
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    top_k: float | None = Field(
        default=None, ge=0, le=100, allow_inf_nan=False, description="Passed to the model"
    )


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(_Sampling):
    pass


class EmbeddingRequest(_Body):
    input: str | list[Any] = Field(description="A text, or a list of texts or token lists")


class SpeechRequest(_Body):
    input: str = Field(max_length=2_000, description="The text to speak, 2,000 characters at most")


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None
    code: str


class OpenAIErrorOut(BaseModel):
    """The error shape of the OpenAI-compatible routes, as the official SDK parses it."""

    error: OpenAIError
