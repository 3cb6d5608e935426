"""Keeping answered chat completions: each one put together (whole, or from its stream once the
stream ends, completions.py) and queued for a batched write through a ``CompletionSink``, off the
request path as request-log rows are."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from gpuyard.core.clock import Clock
from gpuyard.core.principal import Principal
from gpuyard.gateway import completions
from gpuyard.gateway.logs import RequestLogWriter
from gpuyard.gateway.ports import CompletionRow, CompletionSink
from gpuyard.gateway.relay import Relay

Later = Callable[[Coroutine[Any, Any, None]], None]


class CompletionKeeper:
    def __init__(self, sink: CompletionSink, clock: Clock, later: Later) -> None:
        self._writer: RequestLogWriter[CompletionRow] = RequestLogWriter(
            sink, name="completion-writer"
        )
        self._clock = clock
        self._later = later  # runs work after the answer has gone (Gateway.later)

    def start(self) -> None:
        self._writer.start()

    async def stop(self) -> None:
        await self._writer.stop()

    async def flush(self) -> int:
        return await self._writer.flush()

    def keep(self, principal: Principal, relay: Relay) -> None:
        """Keep a chat completion's answer (a stream: once it has ended)."""
        if relay.status != 200:
            return
        if relay.stream is not None:
            relay.stream = self._keeping(principal, relay.stream)
        elif relay.body:
            self._later(self._keep(principal, completions.whole(relay.body)))

    async def _keeping(
        self, principal: Principal, stream: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        """The stream as it is; once it ends, its completion put together and kept."""
        pieces: list[bytes] = []
        try:
            async for piece in stream:
                pieces.append(piece)
                yield piece
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
            self._later(self._keep(principal, completions.from_stream(b"".join(pieces))))

    async def _keep(self, principal: Principal, completion: dict[str, Any] | None) -> None:
        if completion is None:
            return
        model = completion.get("model")
        self._writer.submit(
            CompletionRow(
                id=str(completion["id"])[:200],
                org_id=principal.org_id,
                key_id=principal.key_id,
                model=model[:200] if isinstance(model, str) else None,
                body=completion,
                created_at=self._clock.now(),
            )
        )
