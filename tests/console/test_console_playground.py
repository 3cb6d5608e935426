"""The console's inference playground over real HTTP, on SQLite and Postgres: the model pickers
from what the key may call, chat whole (no scripts) and streamed (the API's events relayed as
they come), embeddings shown by their dimensions and first values, speech played from the page;
refusals in the API's words, bad forms in the console's, a key without inference refused."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from html import unescape
from pathlib import Path

import httpx
import pytest

from tests.console.test_console_http import csrf_of, signed_in
from tests.gateway.kit import deploy, serve
from tests.gateway.upstream import fake_model_server
from tests.server.vector_kit import Vectors, publish, started

ANSWER = "Hello from the fake model"
HISTORY = re.compile(r'name="history" value="([^"]*)"')


@pytest.fixture
async def vectors(db_url: str, tmp_path: Path) -> AsyncIterator[Vectors]:
    """The published chat model ``tiny``, embedding model ``words`` and speech model ``voice``
    (a model server that lists its voices)."""
    async with started(db_url, tmp_path, chat=True) as running, AsyncExitStack() as stack:
        speaker = fake_model_server("voice")

        @speaker.get("/v1/audio/voices")
        async def voices() -> dict[str, list[str]]:
            return {"voices": ["alba", "<b>bold</b>"]}

        spoken = await deploy(running.api, stack, [await serve(stack, speaker)], name="speech")
        await publish(running.api, spoken.cluster_id)
        yield running


def events(text: str) -> list[dict[str, object]]:
    found = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                found.append(json.loads(line[5:]))
    return found


async def test_chat_whole_and_streamed_embeddings_and_speech(vectors: Vectors) -> None:
    browser = await signed_in(vectors.api, vectors.tenant.key)
    r = await browser.get("/console/playground")
    assert r.status_code == 200, r.text
    for model in ("tiny", "words"):
        assert f'<option value="{model}">' in r.text
    assert '<option value="voice">voice</option>' in r.text  # /v1/audio/models
    assert "&lt;b&gt;bold&lt;/b&gt;" in r.text and "<b>bold" not in r.text  # a voice, as text
    token = await csrf_of(browser, "/console/playground")
    form = {"csrf": token, "form": "chat", "model": "tiny", "max_tokens": "8", "history": "[]"}

    # Without scripts: the whole answer in the page, and the conversation carried on.
    r = await browser.post("/console/playground/chat", data={**form, "message": "hi <i>there</i>"})
    assert r.status_code == 200, r.text
    assert ANSWER in r.text and "hi &lt;i&gt;there&lt;/i&gt;" in r.text
    history = json.loads(unescape(HISTORY.search(r.text).group(1)))  # type: ignore[union-attr]
    assert history == [
        {"role": "user", "content": "hi <i>there</i>"},
        {"role": "assistant", "content": ANSWER},
    ]
    assert vectors.chat_server is not None
    assert vectors.chat_server.state.requests[-1]["max_tokens"] == 8

    # With scripts: the API's events, relayed as they come, the history sent along.
    streamed = {**form, "history": json.dumps(history), "message": "and again"}
    async with browser.stream("POST", "/console/playground/chat/stream", data=streamed) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join([piece async for piece in r.aiter_text()])
    chunks = events(text)
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]  # type: ignore[index]
    assert "".join(d for d in deltas if d) == ANSWER and len([d for d in deltas if d]) > 1
    sent = vectors.chat_server.state.requests[-1]
    assert sent["stream"] is True
    assert sent["messages"] == [*history, {"role": "user", "content": "and again"}]

    # Refusals: the API's words (as JSON for the page's script), the console's for a bad form.
    stream_url = "/console/playground/chat/stream"
    r = await browser.post(stream_url, data={**streamed, "model": "nope"})
    assert r.status_code == 404
    assert r.json()["error"] == "The model `nope` does not exist or you do not have access to it."
    r = await browser.post(stream_url, data={**streamed, "message": "  "})
    assert r.status_code == 400 and r.json()["error"] == "Type a message to send."
    r = await browser.post(stream_url, data={**streamed, "history": '[{"role": "system"}]'})
    assert r.status_code == 400 and "The conversation was damaged" in r.json()["error"]
    r = await browser.post(stream_url, data={**streamed, "max_tokens": "lots"})
    assert r.status_code == 400 and r.json()["error"] == "Maximum tokens must be a whole number"
    r = await browser.post(stream_url, data={**streamed, "csrf": "0" * 64})
    assert r.status_code == 403
    r = await browser.post(
        "/console/playground/chat", data={**form, "model": "nope", "message": "x"}
    )
    assert r.status_code == 404 and "The model `nope` does not exist" in r.text
    assert '<textarea id="message" name="message" rows="3" required>x</textarea>' in r.text

    # Embeddings: the dimensions and the first values.
    embed = {"csrf": token, "form": "embed", "model": "words", "input": "apples and pears"}
    r = await browser.post("/console/playground/embeddings", data=embed)
    assert r.status_code == 200, r.text
    assert re.search(r'data-testid="dimensions">64<', r.text)
    assert re.search(r"<code>\[-?\d\.\d{4}(, -?\d\.\d{4}){7}, …\]</code>", r.text), r.text
    r = await browser.post("/console/playground/embeddings", data={**embed, "model": "nope"})
    assert r.status_code == 404 and "nope" in r.text
    assert "apples and pears</textarea>" in r.text  # the form as typed

    # Speech: played from the page (the CSP lets data: media play, nothing else).
    speak = {"csrf": token, "form": "speech", "model": "voice", "voice": "alba", "input": "hi"}
    r = await browser.post("/console/playground/speech", data=speak)
    assert r.status_code == 200, r.text
    assert re.search(r'<audio controls src="data:audio/wav;base64,UklGR[A-Za-z0-9+/=]+"', r.text)
    assert "media-src 'self' data:;" in r.headers["content-security-policy"]
    r = await browser.post("/console/playground/speech", data={**speak, "input": "x" * 2001})
    assert r.status_code == 400 and "2000" in r.text


async def test_a_key_without_inference_is_refused_in_the_apis_words(vectors: Vectors) -> None:
    reader = await vectors.api.tenant("Readers", scopes=["org:read"])
    browser = await signed_in(vectors.api, reader.key)
    r = await browser.get("/console/playground")
    assert r.status_code == 403
    assert "inference" in r.text
    r = await browser.get("/console/vector-store")
    assert r.status_code == 403


async def test_a_dead_model_server_is_shown_not_a_500(vectors: Vectors) -> None:
    browser = await signed_in(vectors.api, vectors.tenant.key)
    token = await csrf_of(browser, "/console/playground")
    form = {"csrf": token, "form": "embed", "model": "words", "input": "x"}
    vectors.model_server.state.down = True
    r = await browser.post("/console/playground/embeddings", data=form)
    assert r.status_code == 503, r.text
    assert 'role="alert"' in r.text
    assert httpx.codes.is_server_error(r.status_code) and "Internal" not in r.text


async def test_the_stream_is_relayed_as_it_comes_and_leaving_ends_it(vectors: Vectors) -> None:
    """A model that sends one word and then waits: the page gets that word at once (nothing
    holds the stream back), and when the page goes away the model's stream is ended."""
    async with AsyncExitStack() as stack:
        slow = fake_model_server("slow", hang_after=1)
        made = await deploy(vectors.api, stack, [await serve(stack, slow)], name="slow")
        await publish(vectors.api, made.cluster_id)
        browser = await signed_in(vectors.api, vectors.tenant.key)
        token = await csrf_of(browser, "/console/playground")
        form = {"csrf": token, "model": "slow", "history": "[]", "message": "hi"}
        async with browser.stream("POST", "/console/playground/chat/stream", data=form) as r:
            assert r.status_code == 200
            lines = r.aiter_lines()
            first = await asyncio.wait_for(anext(lines), 10)
            while not first.startswith("data:"):
                first = await asyncio.wait_for(anext(lines), 10)
            assert json.loads(first[5:])["choices"][0]["delta"]["content"] == "Hello"
            assert not slow.state.cut.is_set()  # the model is still answering
        await asyncio.wait_for(slow.state.cut.wait(), 10)
        assert slow.state.cut_short == ["CancelledError"]
