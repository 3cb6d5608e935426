"""Every event the server records can be asked for by a webhook filter: its group is one the
filters know (a group they do not know is refused as ``unknown_event_type``)."""

from __future__ import annotations

import re
from pathlib import Path

import gpuyard
from gpuyard.core.event_types import GROUPS, check_filter, matches
from gpuyard.core.workload import WorkloadKind

SERVER = Path(gpuyard.__file__).parent / "server"
# events.record(..., type="cluster.created") and type=f"cluster.{status}"
RECORDED = re.compile(r'\btype=f?"([a-z_]+)\.')


def test_every_group_the_server_records_can_be_filtered() -> None:
    recorded: dict[str, Path] = {}
    for path in sorted(SERVER.rglob("*.py")):
        for group in RECORDED.findall(path.read_text()):
            recorded.setdefault(group, path)
    # A workload's state changes are recorded as f"{row.kind}.{row.state}".
    recorded.update({kind.value: SERVER / "services" / "workloads.py" for kind in WorkloadKind})
    assert {"endpoint", "workergroup", "template", "billing", "instance"} <= set(recorded)
    unknown = {group: str(path) for group, path in recorded.items() if group not in GROUPS}
    assert unknown == {}
    for group in recorded:
        assert check_filter(f"{group}.*") is None
        assert matches([f"{group}.*"], f"{group}.created")


def test_bad_filters_say_why() -> None:
    why = check_filter("nosuch.thing")
    assert why is not None and "no event group 'nosuch'" in why
    assert check_filter("instance") is not None  # no event named
    assert check_filter("Instance.running") is not None
