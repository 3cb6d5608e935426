"""What follows an answer (its log row, its settlement, its token count), run shortly after the
answer has gone rather than at once, and waited for at shutdown and in tests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)
AFTER_ANSWER_S = 0.001  # how long what follows a streamed answer waits (see ``later``)


class AfterAnswer:
    def __init__(self, delay: float = AFTER_ANSWER_S) -> None:
        self.delay = delay
        self._background: set[asyncio.Task[None]] = set()
        self._due: list[Coroutine[Any, Any, None]] = []
        self._timer: asyncio.TimerHandle | None = None

    def later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` shortly after, not at once. The server's process would otherwise go on
        with it while the client, woken by the answer's last bytes, often waits for the same
        CPU; waiting a moment lets the process sleep, and the client read its answer, first.
        What is due together runs in one task, in order; ``settle()`` runs what is waiting at
        once and waits for it."""
        self._due.append(work)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._run_due)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in a task of its own, kept until it ends (``settle`` waits for it)."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Run what is waiting now, and wait for every task still running."""
        while self._background or self._due:
            if self._timer is not None:
                self._timer.cancel()
            self._run_due()
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def _run_due(self) -> None:
        self._timer = None
        due, self._due = self._due, []
        if due:
            self.spawn(_run_in_order(due))


async def _run_in_order(works: list[Coroutine[Any, Any, None]]) -> None:
    cancelled = False
    for work in works:
        try:
            await work
        except asyncio.CancelledError:  # shutdown: the rest still runs (each logs, releases)
            cancelled = True
        except Exception:
            log.exception("the work after an answer failed")
    if cancelled:
        raise asyncio.CancelledError
