"""``stream_text`` and ``IncrementalDecoder`` against a fake token model (no torch)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from gpuyard.workers.textgen import GenerationCancelled, Sampling, fallback_prompt
from gpuyard.workers.token_stream import Finish, IncrementalDecoder, stream_text

EOS = 0


class ByteModel:
    """Token ``n`` is byte ``n``; 0 is the end of sequence. Plays back ``script``."""

    context_length = 64
    eos_token_ids = frozenset({EOS})

    def __init__(
        self, script: bytes, *, fail_after: int | None = None, delay_s: float = 0.0
    ) -> None:
        self.script = list(script)
        self.fail_after = fail_after
        self.delay_s = delay_s
        self.emitted = 0
        self.cancelled_seen = threading.Event()

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if i != EOS).decode("utf-8", errors="replace")

    def generate(
        self,
        prompt_ids: list[int],
        sampling: Sampling,
        on_token: Callable[[int], None],
        cancelled: threading.Event,
    ) -> None:
        for token in self.script[: sampling.max_new_tokens]:
            if self.fail_after is not None and self.emitted == self.fail_after:
                raise RuntimeError("the model broke")
            try:
                on_token(token)
            except GenerationCancelled:
                self.cancelled_seen.set()
                return
            self.emitted += 1
            if token == EOS:
                return
            time.sleep(self.delay_s)


async def collect(model: ByteModel, max_new: int, stop: Sequence[str] = ()) -> tuple[str, Finish]:
    parts: list[str] = []
    finish: Finish | None = None
    async for item in stream_text(model, [1, 2, 3], Sampling(max_new_tokens=max_new), stop):
        if isinstance(item, Finish):
            finish = item
        else:
            parts.append(item)
    assert finish is not None
    return "".join(parts), finish


async def test_end_of_sequence_is_stop_and_counted() -> None:
    text, finish = await collect(ByteModel(b"hello\x00"), 10)
    assert text == "hello"
    assert finish == Finish("stop", prompt_tokens=3, completion_tokens=6)


async def test_running_out_of_tokens_is_length() -> None:
    text, finish = await collect(ByteModel(b"hello world"), 5)
    assert (text, finish.finish_reason, finish.completion_tokens) == ("hello", "length", 5)


async def test_multibyte_characters_are_never_split() -> None:
    model = ByteModel("héllo ✓".encode())
    deltas = [
        d async for d in stream_text(model, [1], Sampling(max_new_tokens=20)) if isinstance(d, str)
    ]
    assert "".join(deltas) == "héllo ✓"
    assert all("\ufffd" not in d for d in deltas)


async def test_stop_string_cuts_and_cancels_generation() -> None:
    model = ByteModel(b"one two STOP three four five six", delay_s=0.01)
    text, finish = await collect(model, 100, stop=["STOP"])
    assert text == "one two "
    assert finish.finish_reason == "stop"
    assert model.cancelled_seen.wait(2)
    assert model.emitted < len(b"one two STOP three four five six")


async def test_a_partial_stop_string_is_held_back_then_released() -> None:
    decoder = IncrementalDecoder(lambda ids: bytes(ids).decode(), ["<end>"])
    out = [decoder.push(b) for b in b"ab<en"]
    assert "".join(out) == "ab"
    assert decoder.push(ord("x")) == "<enx"
    assert decoder.flush() == ""
    ended = IncrementalDecoder(lambda ids: bytes(ids).decode(), ["<end>"])
    assert "".join(ended.push(b) for b in b"ab<en") == "ab"
    assert ended.flush() == "<en"


async def test_model_errors_surface_in_the_stream() -> None:
    with pytest.raises(RuntimeError, match="the model broke"):
        await collect(ByteModel(b"abcdef", fail_after=3), 10)


async def test_leaving_the_stream_early_cancels_generation() -> None:
    model = ByteModel(b"x" * 50, delay_s=0.01)
    stream = stream_text(model, [1], Sampling(max_new_tokens=50))
    assert await anext(stream) == "x"
    await stream.aclose()
    assert model.cancelled_seen.wait(2)


def test_fallback_prompt_is_the_documented_one() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]
    assert fallback_prompt(messages) == (
        "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello.\n\nUser: Bye\n\nAssistant:"
    )
