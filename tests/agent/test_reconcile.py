"""``reconcile.plan()``: the whole policy as a table."""

from __future__ import annotations

import pytest

from gpuyard.agent.reconcile import Action, plan
from gpuyard.core.agent_protocol import Assignment, Desired
from gpuyard.core.workload import WorkloadSpec, WorkloadState, WorkloadStatus

SPEC = WorkloadSpec(id="wl_1", command="sleep 60")
OTHER_HASH = "0" * 16


def status(state: WorkloadState, spec_hash: str | None = None) -> WorkloadStatus:
    return WorkloadStatus(id="wl_1", state=state, spec_hash=spec_hash or SPEC.spec_hash())


S = WorkloadState


@pytest.mark.parametrize(
    ("desired", "observed", "expected"),
    [
        (Desired.RUNNING, None, Action.START),
        (Desired.RUNNING, status(S.RUNNING), Action.NOTHING),
        (Desired.RUNNING, status(S.STARTING), Action.NOTHING),
        (Desired.RUNNING, status(S.PENDING), Action.NOTHING),
        (Desired.RUNNING, status(S.EXITED), Action.NOTHING),
        (Desired.RUNNING, status(S.FAILED), Action.NOTHING),
        (Desired.RUNNING, status(S.UNKNOWN), Action.NOTHING),
        (Desired.RUNNING, status(S.STOPPED), Action.START),
        (Desired.RUNNING, status(S.RUNNING, OTHER_HASH), Action.REPLACE),
        (Desired.RUNNING, status(S.EXITED, OTHER_HASH), Action.REPLACE),
        (Desired.STOPPED, None, Action.NOTHING),
        (Desired.STOPPED, status(S.RUNNING), Action.STOP),
        (Desired.STOPPED, status(S.STARTING), Action.STOP),
        (Desired.STOPPED, status(S.UNKNOWN), Action.STOP),
        (Desired.STOPPED, status(S.RUNNING, OTHER_HASH), Action.STOP),
        (Desired.STOPPED, status(S.STOPPED), Action.NOTHING),
        (Desired.STOPPED, status(S.EXITED), Action.NOTHING),
        (Desired.STOPPED, status(S.FAILED), Action.NOTHING),
        (Desired.REMOVED, None, Action.NOTHING),
        (Desired.REMOVED, status(S.RUNNING), Action.REMOVE),
        (Desired.REMOVED, status(S.EXITED), Action.REMOVE),
        (None, None, Action.NOTHING),
        (None, status(S.RUNNING), Action.REMOVE),
        (None, status(S.FAILED), Action.REMOVE),
    ],
)
def test_plan(desired: Desired | None, observed: WorkloadStatus | None, expected: Action) -> None:
    assignment = None if desired is None else Assignment(spec=SPEC, desired=desired)
    assert plan(assignment, observed) is expected
