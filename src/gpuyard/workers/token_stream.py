"""From a blocking token generator to an async stream of text deltas.

``stream_text`` runs the model's ``generate`` in a daemon thread, receives token ids through an
``asyncio`` queue, turns them into text incrementally (holding back an incomplete UTF-8 sequence,
and any tail that could be the start of a ``stop`` string) and ends with a ``Finish`` that carries
the finish reason and the token counts. Leaving the stream early (a client that went away, a stop
string) cancels the generation at its next token.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gpuyard.workers.textgen import GenerationCancelled, Sampling


class TokenModel(Protocol):
    context_length: int
    eos_token_ids: frozenset[int]

    def decode(self, ids: Sequence[int]) -> str: ...

    def generate(
        self,
        prompt_ids: list[int],
        sampling: Sampling,
        on_token: Callable[[int], None],
        cancelled: threading.Event,
    ) -> None: ...


@dataclass(frozen=True)
class Finish:
    finish_reason: str
    """``stop`` (end of sequence or a stop string) or ``length`` (``max_new_tokens`` reached)."""
    prompt_tokens: int
    completion_tokens: int


class IncrementalDecoder:
    """Text deltas from a growing list of token ids, cut at the first ``stop`` string."""

    def __init__(self, decode: Callable[[Sequence[int]], str], stop: Sequence[str]) -> None:
        self._decode = decode
        self._stop = [s for s in stop if s]
        self._ids: list[int] = []
        self._sent = 0
        self.stopped = False

    def push(self, token: int) -> str:
        """The text that is now safe to send (may be empty)."""
        self._ids.append(token)
        text = self._decode(self._ids)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for its next byte
            return ""
        return self._release(text, final=False)

    def flush(self) -> str:
        """What is left once generation ended."""
        if self.stopped:
            return ""
        return self._release(self._decode(self._ids), final=True)

    def _release(self, text: str, *, final: bool) -> str:
        cut = min((i for i in (text.find(s, self._sent) for s in self._stop) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            return self._take(text, cut)
        end = len(text) if final else len(text) - self._held_back(text)
        return self._take(text, max(end, self._sent))

    def _held_back(self, text: str) -> int:
        """Length of the longest tail of ``text`` that starts some stop string."""
        longest = 0
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(text) - self._sent), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def _take(self, text: str, end: int) -> str:
        delta = text[self._sent : end]
        self._sent = max(self._sent, end)
        return delta


@dataclass
class _Done:
    error: BaseException | None = None


async def stream_text(
    model: TokenModel,
    prompt_ids: list[int],
    sampling: Sampling,
    stop: Sequence[str] = (),
) -> AsyncIterator[str | Finish]:
    """Text deltas, then one ``Finish``. Errors of the model are raised here."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[int | _Done] = asyncio.Queue()
    cancelled = threading.Event()

    def deliver(item: int | _Done) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop closed under us: the server is gone
            cancelled.set()

    def on_token(token: int) -> None:
        if cancelled.is_set():
            raise GenerationCancelled
        deliver(token)

    def run() -> None:
        try:
            model.generate(prompt_ids, sampling, on_token, cancelled)
        except BaseException as exc:
            deliver(_Done(exc))
        else:
            deliver(_Done())

    threading.Thread(target=run, name="gpuyard-generate", daemon=True).start()
    decoder = IncrementalDecoder(model.decode, stop)
    count = 0
    last: int | None = None
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _Done):
                if item.error is not None:
                    raise item.error
                break
            count += 1
            last = item
            delta = decoder.push(item)
            if delta:
                yield delta
            if decoder.stopped:
                break
        tail = decoder.flush()
        if tail:
            yield tail
    finally:
        cancelled.set()
    hit_limit = count >= sampling.max_new_tokens and last not in model.eos_token_ids
    reason = "length" if hit_limit and not decoder.stopped else "stop"
    yield Finish(reason, len(prompt_ids), count)
