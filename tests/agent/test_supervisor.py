"""The supervisor driven step by step: a fake server, the real process runtime."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gpuyard.agent.reconcile import Action
from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.agent.transport import AgentRejected, ServerUnavailable
from gpuyard.core.agent_protocol import Desired, HostStatus
from gpuyard.core.hosts import PortRange
from gpuyard.core.workload import WorkloadState

from .fake_server import FakeServer
from .polling import ended, wait_for
from .supervisor_kit import GatedRuntime, live_wrappers, make_supervisor, spec


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


async def test_a_running_assignment_starts_once(
    server: FakeServer, runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    sup = make_supervisor(server, runtime, state_dir, port_range)
    server.assign(spec("wl_a"))

    first = await sup.step()
    assert first.actions == {"wl_a": Action.START}
    assert server.statuses == {}  # the first heartbeat went out before anything ran
    second = await sup.step()
    third = await sup.step()

    assert second.actions == {} and third.actions == {}
    reported = server.statuses["wl_a"]
    assert reported.state is WorkloadState.RUNNING
    assert reported.spec_hash == server.assignments["wl_a"].spec.spec_hash()
    assert [p.pid for p in live_wrappers(state_dir, "wl_a")] == [reported.pid]


async def test_a_command_that_exits_at_once_is_reported_and_never_restarted(
    server: FakeServer, runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    sup = make_supervisor(server, runtime, state_dir, port_range)
    server.assign(spec("wl_boom", "echo boom; echo 'no such model' >&2; exit 3"))

    await sup.step()
    first_run = await wait_for(lambda: runtime.inspect("wl_boom"), ended)
    for _ in range(3):
        report = await sup.step()
        assert report.actions == {}

    reported = server.statuses["wl_boom"]
    assert reported.state is WorkloadState.EXITED
    assert reported.exit_code == 3
    assert reported.log_tail == "boom\nno such model\n"
    assert reported.started_at == first_run.started_at  # the same (only) run
    log = (state_dir / "workloads" / "wl_boom" / "output.log").read_text()
    assert log.count("boom") == 1


async def test_a_workload_that_cannot_start_is_reported_failed_once(
    server: FakeServer, runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    sup = make_supervisor(server, runtime, state_dir, port_range)
    server.assign(spec("wl_img", command=None, image="nvcr.io/nvidia/pytorch:24.01"))

    assert (await sup.step()).actions == {"wl_img": Action.START}
    assert (await sup.step()).actions == {}
    reported = server.statuses["wl_img"]
    assert reported.state is WorkloadState.FAILED
    assert "cannot run on the process runtime" in (reported.message or "")


async def test_desired_stopped_stops_and_running_again_starts(
    server: FakeServer, runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    sup = make_supervisor(server, runtime, state_dir, port_range)
    server.assign(spec("wl_s"))
    await sup.step()
    first_pid = (await runtime.inspect("wl_s")).pid  # type: ignore[union-attr]

    server.want("wl_s", Desired.STOPPED)
    assert (await sup.step()).actions == {"wl_s": Action.STOP}
    assert (await sup.step()).actions == {}
    stopped = server.statuses["wl_s"]
    assert stopped.state is WorkloadState.STOPPED and stopped.exit_code == 143
    assert live_wrappers(state_dir, "wl_s") == []

    server.want("wl_s", Desired.RUNNING)  # a stop on request is undone when asked to run again
    assert (await sup.step()).actions == {"wl_s": Action.START}
    await sup.step()
    again = server.statuses["wl_s"]
    assert again.state is WorkloadState.RUNNING and again.pid != first_pid


async def test_desired_removed_stops_and_forgets(
    server: FakeServer, runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    sup = make_supervisor(server, runtime, state_dir, port_range)
    server.assign(spec("wl_r"))
    await sup.step()

    server.want("wl_r", Desired.REMOVED)
    assert (await sup.step()).actions == {"wl_r": Action.REMOVE}
    assert await runtime.inspect("wl_r") is None
    assert not (state_dir / "workloads" / "wl_r").exists()
    assert live_wrappers(state_dir, "wl_r") == []
    assert (await sup.step()).actions == {}
    assert "wl_r" not in server.statuses


async def test_a_new_spec_for_the_same_id_replaces_the_workload(
    server: FakeServer, runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    sup = make_supervisor(server, runtime, state_dir, port_range)
    server.assign(spec("wl_v", env={"VERSION": "1"}))
    await sup.step()
    old = await runtime.inspect("wl_v")

    server.assign(spec("wl_v", env={"VERSION": "2"}))
    assert (await sup.step()).actions == {"wl_v": Action.REPLACE}
    await sup.step()
    new = server.statuses["wl_v"]
    assert new.state is WorkloadState.RUNNING
    assert new.spec_hash == server.assignments["wl_v"].spec.spec_hash() != old.spec_hash  # type: ignore[union-attr]
    assert [p.pid for p in live_wrappers(state_dir, "wl_v")] == [new.pid]


async def test_an_exited_workload_runs_again_only_with_a_new_spec(
    server: FakeServer, runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    sup = make_supervisor(server, runtime, state_dir, port_range)
    server.assign(spec("wl_x", "exit 1"))
    await sup.step()
    await wait_for(lambda: runtime.inspect("wl_x"), ended)
    assert (await sup.step()).actions == {}

    server.assign(spec("wl_x", "exit 1", labels={"restart": "1"}))
    assert (await sup.step()).actions == {"wl_x": Action.REPLACE}


async def test_a_workload_the_server_forgot_is_removed_only_after_a_heartbeat(
    server: FakeServer, runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    sup = make_supervisor(server, runtime, state_dir, port_range)
    await sup.step()  # registered
    orphan = await runtime.start(spec("wl_orphan"))  # e.g. destroyed while the agent was away

    server.down = True
    for _ in range(3):
        with pytest.raises(ServerUnavailable):
            await sup.step()
    still = await runtime.inspect("wl_orphan")
    assert still is not None and still.state is WorkloadState.RUNNING and still.pid == orphan.pid

    server.down = False
    report = await sup.step()
    assert report.actions == {"wl_orphan": Action.REMOVE}
    assert server.statuses["wl_orphan"].state is WorkloadState.RUNNING  # reported, then removed
    assert await runtime.inspect("wl_orphan") is None
    assert live_wrappers(state_dir, "wl_orphan") == []


async def test_a_new_supervisor_over_the_same_state_dir_readopts(
    server: FakeServer, runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    first = make_supervisor(server, runtime, state_dir, port_range)
    server.assign(spec("wl_keep"))
    await first.step()
    await first.step()
    before = server.statuses["wl_keep"]

    # The agent restarts: a new runtime and supervisor over the same dir; the token is spent.
    restarted_runtime = ProcessRuntime(state_dir, port_range)
    second = make_supervisor(server, restarted_runtime, state_dir, port_range)
    report = await second.step()
    await second.step()

    assert report.actions == {}
    assert len(server.registrations) == 1
    after = server.statuses["wl_keep"]
    assert after.state is WorkloadState.RUNNING and after.pid == before.pid
    assert [p.pid for p in live_wrappers(state_dir, "wl_keep")] == [before.pid]


async def test_a_slow_action_does_not_hold_heartbeats_or_repeat(
    server: FakeServer, runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    gate = GatedRuntime(runtime)
    sup = make_supervisor(server, gate, state_dir, port_range, action_wait_s=0)
    server.assign(spec("wl_slow"))

    first = await sup.step()
    second = await sup.step()
    assert first.actions == {"wl_slow": Action.START} and first.in_flight == 1
    assert second.actions == {} and second.in_flight == 1
    assert len(server.heartbeats) == 2

    gate.open.set()
    assert await sup.wait_idle(timeout_s=10)
    await sup.step()
    assert gate.starts == 1
    assert server.statuses["wl_slow"].state is WorkloadState.RUNNING


async def test_an_unreadable_runtime_reports_unknown_and_decides_nothing(
    server: FakeServer, runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    flaky = GatedRuntime(runtime)
    flaky.open.set()
    sup = make_supervisor(server, flaky, state_dir, port_range)
    server.assign(spec("wl_u"))
    await sup.step()
    await sup.step()

    flaky.broken = True
    server.forget("wl_u")
    report = await sup.step()
    assert report.actions == {}
    assert server.statuses["wl_u"].state is WorkloadState.UNKNOWN
    assert (await runtime.inspect("wl_u")).state is WorkloadState.RUNNING  # type: ignore[union-attr]


async def test_a_revoked_credential_ends_the_run_and_leaves_workloads(
    server: FakeServer, runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    sup = make_supervisor(server, runtime, state_dir, port_range)
    server.assign(spec("wl_rev"))
    await sup.step()
    server.revoke_all()

    with pytest.raises(AgentRejected) as caught:
        await sup.run(asyncio.Event())
    assert caught.value.status == 401 and "revoked" in caught.value.message
    assert (await runtime.inspect("wl_rev")).state is WorkloadState.RUNNING  # type: ignore[union-attr]


async def test_a_host_the_server_removed_is_refused_without_reconciling(
    server: FakeServer, runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    sup = make_supervisor(server, runtime, state_dir, port_range)
    server.assign(spec("wl_h"))
    await sup.step()
    server.host_status = HostStatus.REMOVED
    server.forget("wl_h")

    with pytest.raises(AgentRejected) as caught:
        await sup.step()
    assert caught.value.code == "host_removed"
    assert (await runtime.inspect("wl_h")).state is WorkloadState.RUNNING  # type: ignore[union-attr]
