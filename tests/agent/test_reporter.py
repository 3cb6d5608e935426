"""What heartbeats say about running workloads' output: sent when it changed and the server has
not acknowledged it, bounded per heartbeat, the longest-waiting first."""

from __future__ import annotations

import builtins

from gpuyard.agent.reporter import MAX_LOG_TAIL_CHARS, MAX_RUNNING_LOG_BYTES, StatusReporter
from gpuyard.agent.runtimes.base import DEFAULT_GRACE_S
from gpuyard.core.workload import WorkloadSpec, WorkloadState, WorkloadStatus


class ListedRuntime:
    """A runtime that only lists what a test sets: enough for the reporter."""

    name = "listed"

    def __init__(self) -> None:
        self.statuses: dict[str, WorkloadStatus] = {}

    def set(
        self,
        wid: str,
        output: str,
        *,
        state: WorkloadState = WorkloadState.RUNNING,
        counted: bool = True,
    ) -> None:
        tail = output[-MAX_LOG_TAIL_CHARS * 2 :]
        self.statuses[wid] = WorkloadStatus(
            id=wid, state=state, log_tail=tail, log_size=len(output) if counted else None
        )

    async def list(self) -> builtins.list[WorkloadStatus]:
        return list(self.statuses.values())

    async def start(self, spec: WorkloadSpec) -> WorkloadStatus:
        raise NotImplementedError

    async def inspect(self, workload_id: str) -> WorkloadStatus | None:
        return self.statuses.get(workload_id)

    async def stop(self, workload_id: str, grace_s: float = DEFAULT_GRACE_S) -> WorkloadStatus:
        raise NotImplementedError

    async def remove(self, workload_id: str) -> None:
        self.statuses.pop(workload_id, None)

    async def logs(self, workload_id: str, tail_lines: int = 100) -> str:
        return self.statuses[workload_id].log_tail or ""


async def beat(reporter: StatusReporter, *, answered: bool = True) -> dict[str, WorkloadStatus]:
    reported = reporter.report(await reporter.observe())
    if answered:
        reporter.delivered(reported)
    return {s.id: s for s in reported}


async def test_a_running_log_goes_out_once_per_change_and_again_if_unanswered() -> None:
    runtime = ListedRuntime()
    reporter = StatusReporter(runtime)
    runtime.set("wl_a", "one\n")
    first = await beat(reporter, answered=False)  # the server did not answer
    assert first["wl_a"].log_tail == "one\n" and first["wl_a"].log_size == 4
    again = await beat(reporter)
    assert again["wl_a"].log_tail == "one\n"  # sent again: never acknowledged
    steady = await beat(reporter)
    assert steady["wl_a"].log_tail is None and steady["wl_a"].log_size is None
    assert steady["wl_a"].state is WorkloadState.RUNNING
    runtime.set("wl_a", "one\ntwo\n")
    assert (await beat(reporter))["wl_a"].log_tail == "one\ntwo\n"


async def test_uncounted_output_is_compared_by_its_text() -> None:
    runtime = ListedRuntime()
    reporter = StatusReporter(runtime)
    runtime.set("wl_d", "pulling\n", counted=False)
    assert (await beat(reporter))["wl_d"].log_tail == "pulling\n"
    assert (await beat(reporter))["wl_d"].log_tail is None
    runtime.set("wl_d", "pulling\nserving\n", counted=False)
    assert (await beat(reporter))["wl_d"].log_tail == "pulling\nserving\n"


async def test_an_ended_workload_always_carries_its_tail() -> None:
    runtime = ListedRuntime()
    reporter = StatusReporter(runtime)
    runtime.set("wl_x", "boom\n", state=WorkloadState.EXITED)
    for _ in range(2):
        assert (await beat(reporter))["wl_x"].log_tail == "boom\n"


async def test_a_heartbeat_carries_a_bounded_amount_and_every_workload_gets_its_turn() -> None:
    runtime = ListedRuntime()
    reporter = StatusReporter(runtime)
    count = 3 * MAX_RUNNING_LOG_BYTES // MAX_LOG_TAIL_CHARS  # three heartbeats' worth
    for i in range(count):
        runtime.set(f"wl_{i:03d}", "x" * MAX_LOG_TAIL_CHARS)
    sent: list[str] = []
    for _ in range(3):
        reported = await beat(reporter)
        carried = [s for s in reported.values() if s.log_tail is not None]
        assert sum(len(s.log_tail or "") for s in carried) <= MAX_RUNNING_LOG_BYTES
        assert carried
        sent += [s.id for s in carried]
    assert sorted(sent) == sorted(runtime.statuses)  # each exactly once, within three beats
    for i in range(count):  # all changed again: those that waited longest go first
        runtime.set(f"wl_{i:03d}", "y" * MAX_LOG_TAIL_CHARS)
    reported = await beat(reporter)
    assert all(len(s.log_tail or "") == MAX_LOG_TAIL_CHARS for s in reported.values() if s.log_tail)
