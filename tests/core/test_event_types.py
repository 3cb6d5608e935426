"""Every event the server records can be asked for by a webhook filter, and nothing else can:
the filters' list (``core/event_types.EVENTS``) is checked against every event name in the
server's code, literal or built from a state."""

from __future__ import annotations

import re
from pathlib import Path

import gpuyard
from gpuyard.core.agent_protocol import HostStatus
from gpuyard.core.autoscaling.model import WorkerState
from gpuyard.core.clusters import ClusterStatus
from gpuyard.core.event_types import EVENTS, GROUPS, check_filter, matches
from gpuyard.core.workload import WorkloadKind, WorkloadState

SERVER = Path(gpuyard.__file__).parent / "server"
LITERAL = re.compile(r'"([a-z_]+)\.([a-z_]+)"')
BUILT = re.compile(r'f"(\{[^"{}]+\}|[a-z_]+)\.\{[^"]*\}[a-z_]*"')

# Every event name the server builds from a value, with the values it can take (read in the
# code that records it); any other built name in the server fails the test until it is listed.
WORKLOAD_STATES = {s.value for s in WorkloadState}
BUILT_EVENTS: dict[str, set[str] | None] = {
    'f"replica.{what}"': {"replica." + w for w in ("placed", "draining", "removed")},
    'f"cluster.{status}"': {"cluster." + s.value for s in ClusterStatus} | {"cluster.deleted"},
    'f"host.{target.value}"': {"host." + s.value for s in HostStatus},
    'f"worker.{what}"': {"worker.placed"} | {"worker." + s.value for s in WorkerState},
    'f"worker.{state.value}"': {"worker." + s.value for s in WorkerState},
    'f"instance.{kind}_requested"': {
        f"instance.{k}_requested" for k in ("start", "stop", "restart")
    },
    'f"{row.kind}.{row.state}"': {f"{k.value}.{s}" for k in WorkloadKind for s in WORKLOAD_STATES},
    # Not events: a wake-up mark, autoscaling settings' names, Vast filter errors.
    'f"{self._replica}.{self._changes.get(_host_key(host_id), 0)}"': None,
    'f"autoscaling.{why}"': None,
    'f"autoscaling.{name}"': None,
}


def _sources() -> list[tuple[Path, str]]:
    return [(path, path.read_text()) for path in sorted(SERVER.rglob("*.py"))]


def test_every_event_the_server_names_is_one_a_filter_may_ask_for() -> None:
    named: set[str] = set()
    for _, text in _sources():
        named |= {f"{g}.{e}" for g, e in LITERAL.findall(text) if g in GROUPS}
        for found in BUILT.finditer(text):
            assert found.group(0) in BUILT_EVENTS, f"list {found.group(0)} in BUILT_EVENTS"
            named |= BUILT_EVENTS[found.group(0)] or set()
    assert {"endpoint.scaled", "workergroup.created", "template.deleted"} <= named
    listed = {f"{group}.{event}" for group, events in EVENTS.items() for event in events}
    assert named - listed == set()  # recorded, yet a filter for it would be refused
    assert listed - named == set()  # listed, yet never recorded
    for name in named:
        assert check_filter(name) is None and matches([name], name)
        assert check_filter(name.split(".")[0] + ".*") is None


def test_bad_filters_say_why() -> None:
    why = check_filter("nosuch.thing")
    assert why is not None and "no event group 'nosuch'" in why
    why = check_filter("instance.runing")
    assert why is not None and "no such event of instance" in why and "running" in why
    assert check_filter("instance") is not None  # no event named
    assert check_filter("Instance.running") is not None
