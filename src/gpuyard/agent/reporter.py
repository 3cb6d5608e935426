"""What a heartbeat reports about workloads: the runtime's statuses, as the server should get them.

``observe()`` reads ``runtime.list()`` (everything this runtime has, also what an earlier agent
process started) and logs each change of state once (started, exited with its code, failed).
``report()`` makes the heartbeat's list: sorted by id, at most ``MAX_WORKLOADS_PER_HEARTBEAT``,
each ``log_tail`` cut to its last ``MAX_LOG_TAIL_CHARS``. When the runtime cannot be read (the
Docker engine is down), every workload seen before is reported ``unknown`` instead.

Output of running workloads: a running workload's ``log_tail`` goes out only when it changed
since the last report the server answered (``delivered()``), and a heartbeat carries at most
``MAX_RUNNING_LOG_BYTES`` of such tails; workloads whose turn did not come go first next time.
So the server keeps a running log tail per workload that lags the output by about a heartbeat
interval, a steady host's heartbeats stay small, and a chatty one's stay bounded. The tail of an
ended workload is always sent (it is small, final, and the server writes it only once).
"""

from __future__ import annotations

import logging

from gpuyard.agent.runtimes.base import Runtime
from gpuyard.core.agent_protocol import MAX_WORKLOADS_PER_HEARTBEAT
from gpuyard.core.workload import WorkloadState, WorkloadStatus

log = logging.getLogger(__name__)

MAX_LOG_TAIL_CHARS = 8192
MAX_RUNNING_LOG_BYTES = 64 * 1024
"""Running workloads' log tails in one heartbeat, at most (about 8 full tails)."""

LogMark = tuple[object, int | None, str | None]


class StatusReporter:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._seen: dict[str, WorkloadState] = {}
        self._delivered: dict[str, LogMark] = {}  # the log the server last acknowledged
        self._waiting_since: dict[str, int] = {}  # round in which an unsent change was seen
        self._round = 0

    @property
    def active_count(self) -> int:
        """Workloads that were pending, starting or running when last observed."""
        return sum(1 for state in self._seen.values() if state.is_active)

    async def observe(self) -> dict[str, WorkloadStatus] | None:
        """The runtime's statuses by id; ``None`` when the runtime cannot be read now."""
        try:
            found = await self._runtime.list()
        except Exception as exc:
            log.warning("cannot list workloads on the %s runtime: %s", self._runtime.name, exc)
            return None
        observed: dict[str, WorkloadStatus] = {}
        for status in found:
            observed.setdefault(status.id, status)
            if self._seen.get(status.id) is not status.state:
                _log_transition(status, self._seen.get(status.id))
                self._seen[status.id] = status.state
        for gone in set(self._seen) - set(observed):
            del self._seen[gone]
        for gone in set(self._delivered) - set(observed):
            del self._delivered[gone]
        for gone in set(self._waiting_since) - set(observed):
            del self._waiting_since[gone]
        return observed

    def report(self, observed: dict[str, WorkloadStatus] | None) -> list[WorkloadStatus]:
        if observed is None:  # the runtime is unreadable: say so for what was there last time
            message = f"the agent cannot read its {self._runtime.name} runtime"
            return [
                WorkloadStatus(id=wid, state=WorkloadState.UNKNOWN, message=message)
                for wid in sorted(self._seen)[:MAX_WORKLOADS_PER_HEARTBEAT]
            ]
        self._round += 1
        statuses = [_trimmed(observed[wid]) for wid in sorted(observed)]
        if len(statuses) > MAX_WORKLOADS_PER_HEARTBEAT:
            log.warning(
                "%d workloads on this host; reporting the first %d",
                len(statuses),
                MAX_WORKLOADS_PER_HEARTBEAT,
            )
        return self._running_logs(statuses[:MAX_WORKLOADS_PER_HEARTBEAT])

    def delivered(self, reported: list[WorkloadStatus]) -> None:
        """The server answered a heartbeat that carried ``reported``: their logs are known."""
        for status in reported:
            if status.log_tail is not None:
                self._delivered[status.id] = _mark(status)
                self._waiting_since.pop(status.id, None)

    def _running_logs(self, statuses: list[WorkloadStatus]) -> list[WorkloadStatus]:
        """Keep the tails of running workloads that changed, longest-waiting first, within
        ``MAX_RUNNING_LOG_BYTES``; leave out (``None``) the rest."""
        changed: list[tuple[int, int]] = []  # (round it has waited since, index)
        for i, status in enumerate(statuses):
            if not status.state.is_active or status.log_tail is None:
                continue
            if self._delivered.get(status.id) == _mark(status):
                statuses[i] = status.model_copy(update={"log_tail": None, "log_size": None})
                continue
            since = self._waiting_since.setdefault(status.id, self._round)
            changed.append((since, i))
        budget = MAX_RUNNING_LOG_BYTES
        for _, i in sorted(changed):
            size = len(statuses[i].log_tail or "")
            if size <= budget:
                budget -= size
            else:
                statuses[i] = statuses[i].model_copy(update={"log_tail": None, "log_size": None})
        return statuses


def _mark(status: WorkloadStatus) -> LogMark:
    """What identifies a log's content: the run it is of (a restarted workload's output starts
    over) and its size where the runtime counts bytes, else its text."""
    if status.log_size is not None:
        return status.started_at, status.log_size, None
    return status.started_at, None, status.log_tail


def _trimmed(status: WorkloadStatus) -> WorkloadStatus:
    tail = status.log_tail
    if tail is None or len(tail) <= MAX_LOG_TAIL_CHARS:
        return status
    return status.model_copy(update={"log_tail": tail[-MAX_LOG_TAIL_CHARS:]})


def _log_transition(status: WorkloadStatus, before: WorkloadState | None) -> None:
    if before is None and status.state.is_active:
        port = f", port {status.host_port}" if status.host_port is not None else ""
        log.info("%s is %s (pid %s%s)", status.id, status.state, status.pid, port)
    elif status.state is WorkloadState.EXITED:
        level = logging.INFO if status.exit_code == 0 else logging.WARNING
        log.log(level, "%s exited (code %s): %s", status.id, status.exit_code, status.message)
    elif status.state is WorkloadState.FAILED:
        log.warning("%s failed: %s", status.id, status.message)
    else:
        log.info("%s is %s", status.id, status.state)
