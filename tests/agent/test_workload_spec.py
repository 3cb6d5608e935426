from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from gpuyard.core.workload import WorkloadKind, WorkloadSpec, WorkloadState, WorkloadStatus


def test_spec_hash_is_stable_over_content_not_dict_order() -> None:
    a = WorkloadSpec(id="wl_1", image="img", env={"A": "1", "B": "2"}, labels={"x": "1", "y": "2"})
    b = WorkloadSpec(id="wl_1", image="img", env={"B": "2", "A": "1"}, labels={"y": "2", "x": "1"})
    assert a.spec_hash() == b.spec_hash()
    assert WorkloadSpec.model_validate_json(a.model_dump_json()).spec_hash() == a.spec_hash()
    assert len(a.spec_hash()) == 16


@pytest.mark.parametrize(
    "change",
    [
        {"image": "other"},
        {"env": {"A": "2", "B": "2"}},
        {"args": ["--x"]},
        {"gpu_indices": [0]},
        {"port": 8000},
        {"kind": WorkloadKind.REPLICA},
    ],
)
def test_spec_hash_changes_with_any_field(change: dict[str, object]) -> None:
    base = WorkloadSpec(id="wl_1", image="img", env={"A": "1", "B": "2"})
    assert base.model_copy(update=change).spec_hash() != base.spec_hash()


def test_known_spec_hash_does_not_drift() -> None:
    # Pinned so that a change to the hashing (which would restart every workload) is deliberate.
    assert WorkloadSpec(id="wl_1", command="true").spec_hash() == "e8aadad340939b49"


@pytest.mark.parametrize(
    "bad",
    [
        {"id": "../etc"},
        {"id": ""},
        {"id": "wl 1"},
        {"id": "wl_1", "env": {"1BAD": "x"}},
        {"id": "wl_1", "gpu_indices": [0, 0]},
        {"id": "wl_1", "gpu_indices": [-1]},
        {"id": "wl_1", "port": 0},
        {"id": "wl_1", "health_path": "healthz"},
        {"id": "wl_1", "unknown_field": 1},
    ],
)
def test_spec_rejects_bad_input(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WorkloadSpec.model_validate(bad)


def test_state_groups() -> None:
    active = {s for s in WorkloadState if s.is_active}
    final = {s for s in WorkloadState if s.is_final}
    assert active == {WorkloadState.PENDING, WorkloadState.STARTING, WorkloadState.RUNNING}
    assert final == {WorkloadState.EXITED, WorkloadState.FAILED, WorkloadState.STOPPED}


def test_status_round_trips_as_json() -> None:
    status = WorkloadStatus(
        id="wl_1",
        state=WorkloadState.EXITED,
        exit_code=3,
        host_port=40001,
        pid=123,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        finished_at=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
        message="exited with code 3",
        log_tail="boom\n",
        spec_hash="abc",
    )
    again = WorkloadStatus.model_validate_json(status.model_dump_json())
    assert again == status
    assert status.model_dump(mode="json")["state"] == "exited"
