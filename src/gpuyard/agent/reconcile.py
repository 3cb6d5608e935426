"""What the agent does about one workload, given what the server wants and what the runtime sees.

``plan()`` is the whole policy, as a pure function (table in ``docs/agent-protocol.md``)::

    desired   observed                              action
    running   absent                                start
    running   spec_hash differs                     replace  (stop, remove, start the new spec)
    running   pending / starting / running          nothing
    running   stopped (we stopped it on request)    start    (asked to run again)
    running   exited / failed (ended on its own)    nothing  (reported; never restarted: no loop)
    running   unknown                               nothing  (reported; nothing to act on)
    stopped   active or unknown                     stop
    stopped   absent / ended                        nothing
    removed   present                               remove   (stop with grace, then remove)
    (none)    present                               remove   (the server forgot it; only ever
                                                             decided after a successful heartbeat)

To run an ended workload again the server sends a spec with another ``spec_hash`` (or passes it
through ``stopped`` first when it was stopped, not exited).
"""

from __future__ import annotations

import logging
from enum import StrEnum

from gpuyard.agent.runtimes.base import Runtime
from gpuyard.core.agent_protocol import Assignment, Desired
from gpuyard.core.errors import NotFound
from gpuyard.core.workload import WorkloadSpec, WorkloadState, WorkloadStatus

log = logging.getLogger(__name__)


class Action(StrEnum):
    NOTHING = "nothing"
    START = "start"
    REPLACE = "replace"
    STOP = "stop"
    REMOVE = "remove"


def plan(assignment: Assignment | None, status: WorkloadStatus | None) -> Action:
    if status is None:
        if assignment is not None and assignment.desired is Desired.RUNNING:
            return Action.START
        return Action.NOTHING
    if assignment is None or assignment.desired is Desired.REMOVED:
        return Action.REMOVE
    if assignment.desired is Desired.STOPPED:
        stoppable = status.state.is_active or status.state is WorkloadState.UNKNOWN
        return Action.STOP if stoppable else Action.NOTHING
    if status.spec_hash != assignment.spec.spec_hash():
        return Action.REPLACE
    if status.state is WorkloadState.STOPPED:
        return Action.START
    return Action.NOTHING


async def apply(
    action: Action,
    runtime: Runtime,
    workload_id: str,
    spec: WorkloadSpec | None,
    *,
    grace_s: float,
) -> WorkloadStatus | None:
    """Carry out ``action``; the workload's status afterwards (``None`` once removed)."""
    if action is Action.NOTHING:
        return await runtime.inspect(workload_id)
    if action is Action.STOP:
        return await _stop(runtime, workload_id, grace_s)
    if action in (Action.REMOVE, Action.REPLACE):
        await _stop(runtime, workload_id, grace_s)
        await runtime.remove(workload_id)
        if action is Action.REMOVE:
            return None
    if spec is None:
        raise ValueError(f"{action} of {workload_id} needs its spec")
    return await runtime.start(spec)


async def _stop(runtime: Runtime, workload_id: str, grace_s: float) -> WorkloadStatus | None:
    try:
        return await runtime.stop(workload_id, grace_s)
    except NotFound:
        return None
