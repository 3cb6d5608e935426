"""``Supervisor.run()``: heartbeat pacing, backoff while the server is away, and stopping.

The supervisor's ``sleep`` is a recorder that moves a manual clock: no test waits on real time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from gpuyard.agent.backoff import Backoff
from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.core.agent_protocol import Desired, WaitRequest, WaitResponse
from gpuyard.core.clock import ManualClock
from gpuyard.core.hosts import PortRange
from gpuyard.core.workload import WorkloadState

from .fake_server import FakeServer
from .supervisor_kit import live_wrappers, make_supervisor, spec


class Sleeps:
    """An injected ``sleep``: records each wait, moves the clock, and may act after the n-th."""

    def __init__(self, clock: ManualClock, stop: asyncio.Event, stop_after: int) -> None:
        self.clock = clock
        self.stop = stop
        self.stop_after = stop_after
        self.waits: list[float] = []
        self.hooks: dict[int, Callable[[], None]] = {}

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)
        hook = self.hooks.get(len(self.waits))
        if hook is not None:
            hook()
        if len(self.waits) >= self.stop_after:
            self.stop.set()


async def test_an_unreachable_server_is_retried_with_backoff_and_workloads_stay(
    runtime: ProcessRuntime,
    state_dir: Path,
    port_range: PortRange,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = FakeServer()
    clock, stop = ManualClock(), asyncio.Event()
    sleeps = Sleeps(clock, stop, stop_after=8)
    sup = make_supervisor(server, runtime, state_dir, port_range, clock=clock, sleep=sleeps)
    server.assign(spec("wl_keep"))
    await sup.step()
    running = await runtime.inspect("wl_keep")
    orphan = await runtime.start(spec("wl_orphan"))  # not assigned: only a heartbeat may drop it
    server.down = True

    with caplog.at_level(logging.WARNING, logger="gpuyard.agent"):
        await sup.run(stop)

    assert sleeps.waits == [1, 2, 4, 8, 16, 30, 30, 30]
    assert len(server.heartbeats) == 1  # the step before the server went away
    for before in (running, orphan):
        now = await runtime.inspect(before.id)  # type: ignore[union-attr]
        assert now is not None and now.state is WorkloadState.RUNNING and now.pid == before.pid  # type: ignore[union-attr]
    assert "server unreachable" in caplog.text
    assert "retrying in 4s" in caplog.text
    assert "workloads keep running" in caplog.text


async def test_backoff_resets_once_the_server_answers(
    runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    server = FakeServer(interval_s=5.0)
    clock, stop = ManualClock(), asyncio.Event()
    sleeps = Sleeps(clock, stop, stop_after=7)
    sup = make_supervisor(server, runtime, state_dir, port_range, clock=clock, sleep=sleeps)
    await sup.step()
    server.down = True

    def back_up() -> None:
        server.down = False

    def down_again() -> None:
        server.down = True

    sleeps.hooks = {3: back_up, 5: down_again}
    await sup.run(stop)

    assert sleeps.waits == [1, 2, 4, 5, 5, 1, 2]
    assert sup.last_heartbeat_at is not None


async def test_a_retry_after_from_the_server_is_honoured(
    runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    server = FakeServer(down=True, retry_after=7.0)
    clock, stop = ManualClock(), asyncio.Event()
    sleeps = Sleeps(clock, stop, stop_after=5)
    sup = make_supervisor(server, runtime, state_dir, port_range, clock=clock, sleep=sleeps)

    await sup.run(stop)  # the first registration is retried too (how `gpuyard up` starts)

    assert sleeps.waits == [7, 7, 7, 8, 16]
    assert server.registrations == []


async def test_a_round_that_acted_is_followed_up_soon(
    runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    server = FakeServer(interval_s=5.0)
    clock, stop = ManualClock(), asyncio.Event()
    sleeps = Sleeps(clock, stop, stop_after=3)
    sup = make_supervisor(server, runtime, state_dir, port_range, clock=clock, sleep=sleeps)
    server.assign(spec("wl_quick", "echo done"))

    await sup.run(stop)

    assert sleeps.waits == [0.25, 5, 5]
    assert server.statuses["wl_quick"].spec_hash == server.assignments["wl_quick"].spec.spec_hash()


async def test_the_server_interval_paces_heartbeats(
    runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    server = FakeServer(interval_s=2.5)
    clock, stop = ManualClock(), asyncio.Event()
    sleeps = Sleeps(clock, stop, stop_after=3)
    sup = make_supervisor(server, runtime, state_dir, port_range, clock=clock, sleep=sleeps)

    await sup.run(stop)

    assert sleeps.waits == [2.5, 2.5, 2.5]
    assert len(server.heartbeats) == 3
    assert sup.heartbeat_interval_s == 2.5


async def test_stopping_leaves_workloads_running_for_the_next_agent(
    runtime: ProcessRuntime,
    state_dir: Path,
    port_range: PortRange,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = FakeServer()
    clock, stop = ManualClock(), asyncio.Event()
    sleeps = Sleeps(clock, stop, stop_after=2)
    sup = make_supervisor(server, runtime, state_dir, port_range, clock=clock, sleep=sleeps)
    server.assign(spec("wl_stays"))

    with caplog.at_level(logging.INFO, logger="gpuyard.agent"):
        await sup.run(stop)

    assert len(live_wrappers(state_dir, "wl_stays")) == 1
    assert "1 workload(s) keep running and will be re-adopted" in caplog.text


async def test_an_agent_that_stops_its_workloads_on_exit_reports_them_and_restarts_them(
    runtime: ProcessRuntime,
    state_dir: Path,
    port_range: PortRange,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``gpuyard up``'s local agent: stopping it stops what runs and says so in one last
    heartbeat; the next agent starts again what the server still wants running."""
    server = FakeServer()
    clock, stop = ManualClock(), asyncio.Event()
    sleeps = Sleeps(clock, stop, stop_after=2)
    sup = make_supervisor(
        server,
        runtime,
        state_dir,
        port_range,
        clock=clock,
        sleep=sleeps,
        stop_workloads_on_exit=True,
    )
    server.assign(spec("wl_runs"))
    server.assign(spec("wl_held"), desired=Desired.STOPPED)

    with caplog.at_level(logging.INFO, logger="gpuyard.agent"):
        await sup.run(stop)

    assert live_wrappers(state_dir, "wl_runs") == []
    assert server.statuses["wl_runs"].state is WorkloadState.STOPPED  # the final report
    assert "1 workload(s) stopped; the next start runs them again" in caplog.text

    joined = asyncio.Event()
    again = make_supervisor(server, runtime, state_dir, port_range, clock=clock, joined=joined)
    await again.step()
    assert joined.is_set()
    assert len(live_wrappers(state_dir, "wl_runs")) == 1
    assert await runtime.inspect("wl_held") is None  # never asked to run: not started
    await runtime.stop("wl_runs", grace_s=5)


async def test_a_stop_during_a_heartbeat_ends_the_run_at_once(
    runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    server = HangingServer()
    sup = make_supervisor(server, runtime, state_dir, port_range)
    stop = asyncio.Event()
    running = asyncio.create_task(sup.run(stop))
    await server.called.wait()

    stop.set()
    await asyncio.wait_for(running, timeout=10)


def test_backoff_doubles_up_to_its_cap_and_jitter_only_shortens() -> None:
    plain = Backoff(random_fn=lambda: 0.0)
    assert [plain.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    plain.reset()
    assert plain.next_delay() == 1

    most = Backoff(random_fn=lambda: 1.0, jitter=0.2)
    assert [round(most.next_delay(), 6) for _ in range(6)] == [0.8, 1.6, 3.2, 6.4, 12.8, 24.0]


class HangingServer(FakeServer):
    """A server whose heartbeat never answers."""

    def __init__(self) -> None:
        super().__init__()
        self.called = asyncio.Event()

    async def heartbeat(self, credential, request):  # type: ignore[no-untyped-def]
        self.called.set()
        await asyncio.Event().wait()


class Waits:
    """An injected ``waiter``: the server's side of ``/v1/agent/wait`` by hand."""

    def __init__(self, answers: list[bool | Exception], stop: asyncio.Event) -> None:
        self.answers = answers
        self.stop = stop
        self.calls: list[WaitRequest] = []
        self.hooks: dict[int, Callable[[], None]] = {}

    async def __call__(self, credential: str, request: WaitRequest) -> WaitResponse:
        assert credential.startswith("gyh_")
        self.calls.append(request)
        hook = self.hooks.get(len(self.calls))
        if hook is not None:
            hook()
        if not self.answers:
            self.stop.set()
            await asyncio.Event().wait()  # held until the pause ends
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return WaitResponse(changed=answer, mark=f"r.{len(self.calls)}")


async def test_new_work_ends_the_pause_at_once(
    runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    server = FakeServer(interval_s=5.0)
    stop = asyncio.Event()
    slept: list[float] = []

    async def never(seconds: float) -> None:  # only the waiter can end a pause
        slept.append(seconds)
        await asyncio.Event().wait()

    waits = Waits([True], stop)
    waits.hooks = {1: lambda: server.assign(spec("wl_soon"))}  # work comes while it waits
    sup = make_supervisor(server, runtime, state_dir, port_range, sleep=never, waiter=waits)
    await sup.step()
    await sup.run(stop)

    assert len(server.heartbeats) == 3  # the step, the round before the wait, the one after
    assert [(c.mark, c.timeout_s) for c in waits.calls] == [(None, 5.0), ("r.1", 0.25)]
    assert slept == [5.0, 0.25]  # neither pause was slept through
    started = await runtime.inspect("wl_soon")
    assert started is not None and started.state is WorkloadState.RUNNING


async def test_a_failed_wait_leaves_the_pause_to_run_its_course(
    runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    server = FakeServer(interval_s=5.0)
    clock, stop = ManualClock(), asyncio.Event()
    sleeps = Sleeps(clock, stop, stop_after=2)
    waits = Waits([RuntimeError("404: an older server"), False], stop)
    sup = make_supervisor(
        server, runtime, state_dir, port_range, clock=clock, sleep=sleeps, waiter=waits
    )
    await sup.run(stop)
    assert sleeps.waits == [5.0, 5.0]
    assert len(server.heartbeats) == 2
