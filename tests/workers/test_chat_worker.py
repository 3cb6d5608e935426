"""``gpuyard worker chat`` over a tiny random-weight model (made by ``gpuyard worker
make-tiny-model``), as a real subprocess, called with the official ``openai`` SDK."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from .conftest import PASSED_THROUGH, Worker, launch, require, wait_healthy

# One worker process for the module: its tests run in one xdist worker (one group), not
# started again in each.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("chat-worker")]

require("torch", "transformers", "tokenizers")

MAX_NEW_TOKENS = 24
USER = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models") / "tiny"
    env = {**os.environ, "HOME": str(directory.parent)}
    env.update({name: os.environ[name] for name in PASSED_THROUGH if name in os.environ})
    done = subprocess.run(
        [sys.executable, "-m", "gpuyard.cli.main", "worker", "make-tiny-model", str(directory)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(directory.resolve())
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= {
        p.name for p in directory.iterdir()
    }
    return directory


@pytest.fixture(scope="module")
def chat(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    args = ["--model", str(tiny_model), "--model-id", "tiny-chat"]
    worker = launch(
        "chat", [*args, "--max-new-tokens", str(MAX_NEW_TOKENS)], tmp_path_factory.mktemp("chat")
    )
    try:
        seen = wait_healthy(worker)
        assert 503 in seen, f"/health should answer 503 while the model loads; saw {seen}"
        yield worker
    finally:
        worker.stop()


def client(worker: Worker) -> openai.OpenAI:
    return openai.OpenAI(base_url=worker.base_url, api_key="unused", max_retries=0)


def ask(worker: Worker, **fields: Any) -> Any:
    return client(worker).chat.completions.create(
        **{"model": "tiny-chat", "messages": USER, **fields}
    )


def test_models_lists_the_model_id(chat: Worker) -> None:
    assert [m.id for m in client(chat).models.list().data] == ["tiny-chat"]


def test_chat_completion_shape_and_usage(chat: Worker) -> None:
    result = ask(chat, max_tokens=8, seed=7)
    assert result.object == "chat.completion" and result.id.startswith("chatcmpl-")
    assert result.model == "tiny-chat"
    choice = result.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    usage = result.usage
    assert usage is not None and usage.prompt_tokens > 3
    assert 1 <= usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if choice.finish_reason == "length":
        assert usage.completion_tokens == 8


def test_max_tokens_is_capped_by_the_server(chat: Worker) -> None:
    result = ask(chat, max_tokens=10_000, temperature=0)
    assert result.usage is not None and result.usage.completion_tokens <= MAX_NEW_TOKENS


def test_seed_and_greedy_decoding_are_reproducible(chat: Worker) -> None:
    first = ask(chat, max_tokens=12, seed=42, temperature=1.0)
    again = ask(chat, max_tokens=12, seed=42, temperature=1.0)
    assert first.choices[0].message.content == again.choices[0].message.content
    greedy = [ask(chat, max_tokens=12, temperature=0).choices[0].message.content for _ in range(2)]
    assert greedy[0] == greedy[1]


def test_streaming_matches_the_full_answer_and_ends_with_usage(chat: Worker) -> None:
    full = ask(chat, max_tokens=16, temperature=0)
    chunks = list(
        ask(chat, max_tokens=16, temperature=0, stream=True, stream_options={"include_usage": True})
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == full.choices[0].finish_reason and not any(finishes[:-1])
    *body, last = chunks
    assert last.choices == [] and last.usage is not None
    assert last.usage.model_dump() == full.usage.model_dump()
    assert all(c.usage is None for c in body)


def test_streaming_without_include_usage_has_no_usage(chat: Worker) -> None:
    chunks = list(ask(chat, max_tokens=4, stream=True))
    assert chunks and all(c.usage is None and c.choices for c in chunks)


def test_stream_is_server_sent_events_ending_in_done(chat: Worker) -> None:
    body = {"model": "tiny-chat", "messages": USER, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{chat.base_url}/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = [block for block in raw.split("\n\n") if block]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"


def test_stop_strings_cut_the_answer(chat: Worker) -> None:
    sampled = {"max_tokens": MAX_NEW_TOKENS, "temperature": 1.0, "seed": 11}  # reproducible
    full = ask(chat, **sampled).choices[0].message.content
    candidates = [(i, full[i : i + 2]) for i in range(2, len(full) - 2)]
    usable = [
        (i, s) for i, s in candidates if s.strip() and "\ufffd" not in s and full.find(s) == i
    ]
    assert usable, f"no usable stop string in {full!r}"
    at, stop = usable[0]
    cut = ask(chat, **sampled, stop=[stop])
    assert cut.choices[0].message.content == full[:at]
    assert cut.choices[0].finish_reason == "stop"
    streamed = ask(chat, **sampled, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == full[:at]


def test_completions_endpoint(chat: Worker) -> None:
    sdk = client(chat)
    result = sdk.completions.create(model="tiny-chat", prompt="The quick brown", temperature=0)
    assert result.object == "text_completion" and result.id.startswith("cmpl-")
    assert result.usage is not None and result.usage.prompt_tokens >= 2
    assert result.usage.completion_tokens <= 16  # the endpoint's default max_tokens
    chunks = list(
        sdk.completions.create(
            model="tiny-chat",
            prompt="The quick brown",
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == result.choices[0].text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == result.usage.completion_tokens


def test_concurrent_requests_all_complete(chat: Worker) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda s: ask(chat, max_tokens=6, seed=s), range(4)))
    assert all(r.usage is not None and r.usage.completion_tokens >= 1 for r in results)


def test_bad_requests_are_openai_shaped_400s(chat: Worker) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"n": 2}, "n", "unsupported_parameter"),
        ({"temperature": 3}, "temperature", "invalid_value"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages", "invalid_value"),
        ({"messages": []}, "messages", "invalid_value"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages",
            "invalid_value",
        ),
        (
            {"messages": [{"role": "user", "content": "the " * 300}]},
            "messages",
            "context_length_exceeded",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}]},
            "tools",
            "unsupported_parameter",
        ),
    ]
    for fields, param, code in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            ask(chat, **fields)
        error = caught.value.body
        assert isinstance(error, dict), error
        assert (error["param"], error["code"]) == (param, code), (fields, error)
        assert error["type"] == "invalid_request_error" and error["message"]
    for prompt in ([1, 2, 3], ""):
        with pytest.raises(openai.BadRequestError):
            client(chat).completions.create(model="tiny-chat", prompt=prompt)
