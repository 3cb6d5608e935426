"""The Vultr Inference API's sampling ranges on chat and text completions (``temperature``
0..2, ``top_p`` 0..1, ``top_k`` 0..100) and the 2,000 characters of speech ``input``: 400s in
the OpenAI error shape before any replica is asked; ``top_k`` and ``seed`` in range pass
through to the model server."""

from __future__ import annotations

from contextlib import AsyncExitStack

import openai
import pytest

from tests.gateway.kit import deploy, openai_error, serve
from tests.gateway.upstream import fake_model_server
from tests.harness import Api

ASK = [{"role": "user", "content": "hi"}]


async def test_out_of_range_sampling_is_refused_in_range_passes(api: Api) -> None:
    async with AsyncExitStack() as stack:
        server = fake_model_server()
        d = await deploy(api, stack, [await serve(stack, server)])
        c = d.tenant.client
        for field, bad in [
            ("temperature", 2.5),
            ("temperature", -0.1),
            ("top_p", 1.01),
            ("top_k", 101),
            ("top_k", -1),
        ]:
            for endpoint, extra in [
                ("chat/completions", {"messages": ASK}),
                ("completions", {"prompt": "hi"}),
            ]:
                r = await c.post(f"/v1/{endpoint}", json={"model": "tiny", field: bad, **extra})
                error = openai_error(r, 400, "out_of_range")
                assert error["param"] == field
        r = await c.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": ASK, "top_k": "5"}
        )
        assert openai_error(r, 400, "invalid_type")["param"] == "top_k"
        r = await c.post(
            "/v1/audio/speech", json={"model": "tiny", "voice": "a", "input": "x" * 2_001}
        )
        assert openai_error(r, 400, "invalid_request")["param"] == "input"
        assert server.state.requests == []  # no replica was asked

        answer = await d.sdk.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "hi"}],
            temperature=2,
            top_p=0,
            extra_body={"top_k": 100, "seed": 7},
        )
        assert answer.choices[0].message.content == "Hello from the fake model"
        sent = server.state.requests[-1]
        assert (sent["temperature"], sent["top_p"], sent["top_k"], sent["seed"]) == (2, 0, 100, 7)
        speech = await c.post(
            "/v1/audio/speech", json={"model": "tiny", "voice": "a", "input": "x" * 2_000}
        )
        assert speech.status_code == 200
        with pytest.raises(openai.BadRequestError):
            await d.sdk.chat.completions.create(model="tiny", messages=ASK, temperature=3)
