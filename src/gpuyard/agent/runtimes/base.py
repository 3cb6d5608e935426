"""The contract every runtime (``process``, ``docker``) keeps.

A runtime runs workloads and tells what it sees; it holds no policy. Deciding whether an exited
workload is started again, or whether a running one whose ``spec_hash`` differs is replaced, is the
supervisor's job. Every runtime keeps these rules:

- ``start()`` of a workload that is already running starts nothing and returns its status, so a
  restarted agent never runs a duplicate. ``start()`` of one that has ended starts it afresh.
- A spec that can never run on this runtime gives a ``failed`` status (with a message) rather
  than an exception; ``inspect()`` keeps answering that status until ``remove()``.
- ``list()`` reports everything the runtime can find of its own, including what an earlier agent
  process started: that is how a restarted agent re-adopts its workloads.
- ``stop()`` asks politely (SIGTERM), waits ``grace_s`` seconds, then kills. ``stop()`` and
  ``logs()`` of an unknown workload raise ``NotFound``; ``remove()`` of one is a no-op.
"""

from __future__ import annotations

from typing import Protocol

from gpuyard.core.errors import NotFound
from gpuyard.core.hosts import Isolation
from gpuyard.core.workload import WorkloadSpec, WorkloadStatus

LOG_TAIL_LINES = 50
"""How many lines of output a status carries in ``log_tail`` (running or ended)."""

DEFAULT_GRACE_S = 10.0


class Runtime(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def isolation(self) -> Isolation:
        """How this runtime keeps workloads apart, for the host's facts."""
        ...

    async def start(self, spec: WorkloadSpec) -> WorkloadStatus: ...

    async def inspect(self, workload_id: str) -> WorkloadStatus | None: ...

    async def stop(self, workload_id: str, grace_s: float = DEFAULT_GRACE_S) -> WorkloadStatus: ...

    async def remove(self, workload_id: str) -> None: ...

    async def logs(self, workload_id: str, tail_lines: int = 100) -> str: ...

    async def list(self) -> list[WorkloadStatus]: ...


def unknown_workload(workload_id: str) -> NotFound:
    return NotFound(f"no workload {workload_id!r} on this runtime", param="workload_id")
