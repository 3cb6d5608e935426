"""Request bodies of ``/v1/chat/completions`` and ``/v1/completions``, and what this worker
refuses in them (with a 400 naming the field, rather than silently ignoring it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gpuyard.workers.errors import ApiError, bad_request
from gpuyard.workers.textgen import Sampling

MAX_STOP_STRINGS = 4
_ROLES = ("system", "developer", "user", "assistant")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class GenerationRequest(BaseModel):
    """The fields both endpoints share."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: float | None = Field(default=None, ge=0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = 1
    logprobs: Any = None
    user: str | None = None

    def stop_strings(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOP_STRINGS:
            raise bad_request(
                f"stop takes at most {MAX_STOP_STRINGS} strings", param="stop", code="invalid_value"
            )
        return [s for s in stops if s]

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def refuse_unsupported(self) -> None:
        if self.n not in (None, 1):
            raise _unsupported("n", "this worker generates one choice per request (n=1)")
        if self.logprobs not in (None, False, 0):
            raise _unsupported("logprobs", "this worker does not return log probabilities")

    def sampling(self, max_new_tokens: int) -> Sampling:
        temperature = 1.0 if self.temperature is None else self.temperature
        top_p = 1.0 if self.top_p is None else self.top_p
        if top_p == 0:
            temperature = 0.0  # only the most likely token is left: that is greedy decoding
        seed = None if self.seed is None or self.seed < 0 else self.seed  # Vultr: -1 is random
        return Sampling(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=int(self.top_k or 0),
            seed=seed,
        )


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None

    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def plain_messages(self) -> list[dict[str, str]]:
        """The messages as ``{"role", "content"}`` strings; a 400 for what cannot be shown to a
        text model (tool turns, images)."""
        self.refuse_unsupported()
        if self.tools:
            raise _unsupported("tools", "this worker does not call tools")
        if self.response_format and self.response_format.get("type", "text") != "text":
            raise _unsupported("response_format", "this worker only answers free text")
        return [_plain(index, message) for index, message in enumerate(self.messages)]


class CompletionRequest(GenerationRequest):
    prompt: Any
    echo: bool | None = False
    suffix: str | None = None
    best_of: int | None = None

    def prompt_text(self) -> str:
        self.refuse_unsupported()
        if self.echo:
            raise _unsupported("echo", "this worker does not echo the prompt")
        if self.suffix:
            raise _unsupported("suffix", "this worker does not fill in a suffix")
        if self.best_of not in (None, 1):
            raise _unsupported("best_of", "this worker generates one candidate (best_of=1)")
        prompt = self.prompt
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            raise _unsupported("prompt", "this worker takes one prompt per request")
        raise bad_request(
            "prompt must be a string (token arrays are not supported)",
            param="prompt",
            code="invalid_value",
        )


def _plain(index: int, message: ChatMessage) -> dict[str, str]:
    where = f"messages[{index}]"
    if message.role not in _ROLES:
        raise bad_request(
            f"{where}.role {message.role!r} is not supported; use one of {', '.join(_ROLES)}",
            param="messages",
            code="invalid_value",
        )
    content = message.content
    if content is None:
        content = ""
    elif isinstance(content, list):
        texts = []
        for part in content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad_request(
                    f"{where}.content: only text parts are supported, got {part.get('type')!r}",
                    param="messages",
                    code="invalid_value",
                )
            texts.append(part["text"])
        content = "\n".join(texts)
    role = "system" if message.role == "developer" else message.role
    return {"role": role, "content": content}


def _unsupported(param: str, why: str) -> ApiError:
    return bad_request(
        f"{param} is not supported: {why}", param=param, code="unsupported_parameter"
    )
