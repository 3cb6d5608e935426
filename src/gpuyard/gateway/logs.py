"""Request logs (and kept chat completions), written off the request path: ``submit`` queues a
row; a background task hands queued rows to their sink (``LogSink``, ``CompletionSink``:
ports.py) in batches, at most once per ``interval`` (one
transaction for many requests, and none competing with each request at a low rate). A full
queue drops the row (and counts it) rather than slow a request; a killed process loses what was
queued (at most ``interval``'s)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from gpuyard.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)
BATCH = 200
Row = TypeVar("Row")
RowIn = TypeVar("RowIn", contravariant=True)


class RowSink(Protocol[RowIn]):
    async def write(self, rows: Sequence[RowIn]) -> None: ...


class RequestLogWriter(Generic[Row]):
    def __init__(
        self,
        sink: RowSink[Row],
        *,
        max_queue: int = 10_000,
        interval: float = 0.5,
        name: str = "request-log-writer",
    ) -> None:
        self._sink = sink
        self._interval = interval
        self._name = name
        self._pending = asyncio.Event()
        self._queue: asyncio.Queue[Row] = asyncio.Queue(maxsize=max_queue)
        self._task: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()
        self.dropped = 0

    def submit(self, row: Row) -> None:
        try:
            self._queue.put_nowait(row)
        except asyncio.QueueFull:
            self.dropped += 1
            return
        self._pending.set()

    async def flush(self) -> int:
        """Write a batch of queued rows. One writer at a time, so that when a flush returns,
        the rows another one had taken (the background task's) are written too."""
        async with self._writing:
            rows: list[Row] = []
            while not self._queue.empty() and len(rows) < BATCH:
                rows.append(self._queue.get_nowait())
            if rows:
                await self._sink.write(rows)
            return len(rows)

    async def _run(self) -> None:
        while True:
            await self._pending.wait()
            await asyncio.sleep(self._interval)  # the rows of the next ``interval`` join the batch
            self._pending.clear()
            try:  # shielded: stop() cancels this task, but never a batch half-written
                while await asyncio.shield(self.flush()):
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: could not write", self._name)
                if not self._queue.empty():
                    self._pending.set()  # tried again after the next interval

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        try:  # after a batch in flight (it holds the lock), what is still queued
            while await self.flush():
                pass
        except Exception:
            log.exception("%s: could not write the last rows", self._name)
