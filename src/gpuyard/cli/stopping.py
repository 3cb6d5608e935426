"""How ``gpuyard up`` and ``gpuyard server`` stop: the same way whatever signal handling they
inherit.

A shell starts a background job (``gpuyard up > log &``, ``nohup``, many CI runners) with SIGINT
ignored, and a process inherits that. ``take_stop_signals()`` handles SIGINT and SIGTERM itself
before anything starts, so either stops the start-up as Ctrl-C does in a terminal: it raises
``KeyboardInterrupt``, and is remembered too (``interrupted()``), because an exception raised
inside a finaliser or a garbage-collection callback is only printed by Python, not propagated.

While serving, ``GracefulServer`` takes both signals itself (never re-raising them afterwards,
as uvicorn's own handler does), so one stop sequence runs whichever arrives:

1. the first SIGINT or SIGTERM stops the local agent first: it stops the workloads it started
   and reports them stopped while the API still answers;
2. then the API drains (uvicorn's graceful shutdown) and the process exits 0;
3. a second signal stops at once (the agent is cancelled, open connections are dropped).

An API worker process of ``--workers N`` (``api_worker.py``) is told to stop by its parent
(``stop()``, ``stop_now()``) as well as by a signal sent to it directly; only signals count
towards "a second one stops at once", so a worker that both its parent and a service manager
(systemd signals every process of the unit) ask to stop still drains.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn

log = logging.getLogger("gpuyard.cli")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []


def take_stop_signals() -> None:
    """From now until something else handles them (the server, the agent's loop), SIGINT and
    SIGTERM raise ``KeyboardInterrupt``, whatever disposition the parent left, and are
    remembered."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _interrupt)


def interrupted() -> int | None:
    """The first stop signal received so far, if any (even one whose exception was lost)."""
    return _received[0] if _received else None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


class GracefulServer(uvicorn.Server):
    """A uvicorn server whose first stop signal awaits ``before_exit()`` (the local agent
    stopping), then drains the API; a second signal calls ``on_force()`` and exits at once.
    ``on_started()`` is called once it accepts connections."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        before_exit: Callable[[], Awaitable[None]] | None = None,
        on_force: Callable[[], None] | None = None,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._before_exit = before_exit
        self._on_force = on_force
        self._on_started = on_started
        self.stop_signal: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        # Runs once uvicorn has put its handlers in place: a signal that came just before them
        # (remembered by take_stop_signals) stops the server as one that comes later would.
        self._loop.call_soon(self._signalled_before)
        await super().serve(sockets=sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._on_started is not None:
            self._on_started()

    def stop(self) -> None:
        """Stop as a first signal does (drain, then exit); asked by a parent, not a signal."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop())

    def stop_now(self) -> None:
        """Stop as a second signal does: open connections are dropped."""
        if self._on_force is not None:
            self._on_force()
        self.force_exit = True
        self.should_exit = True

    def _signalled_before(self) -> None:
        signum = interrupted()
        if signum is not None and self.stop_signal is None:
            self._on_signal(signum)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Called by the handler uvicorn installs for SIGINT and SIGTERM while it serves; unlike
        uvicorn's own, it does not make the process raise the signal again once stopped."""
        if self._loop is None:
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self.stop_signal is not None:
            log.warning("second %s: stopping now", name)
            self.stop_now()
            return
        self.stop_signal = sig
        log.info("%s: stopping (a second one stops at once)", name)
        self.stop()

    async def _stop(self) -> None:
        if self._before_exit is not None:
            try:
                await self._before_exit()
            except asyncio.CancelledError:
                pass  # forced: the second signal cancelled it
            except Exception:
                log.exception("stopping the local agent failed")
        self.should_exit = True
