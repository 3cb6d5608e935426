"""The names of events, for webhook filters: ``<group>.<event>`` (``instance.running``,
``billing.credited``), or ``<group>.*`` for every event of a group.

``EVENTS`` is every event the server records, by group; a filter naming anything else is
refused, so a typo (``instance.runing``) is an error and not a subscription that never fires.
Events named after a state are listed from the state's enum (a workload's, a cluster's, a
host's, a serverless worker's); ``tests/core/test_event_types.py`` checks the list against every
event name in the server's code.
"""

from __future__ import annotations

import re

from gpuyard.core.agent_protocol import HostStatus
from gpuyard.core.autoscaling.model import WorkerState
from gpuyard.core.clusters import ClusterStatus
from gpuyard.core.workload import WorkloadState

# A workload's reported states are events of its kind (instance, replica, worker).
_WORKLOAD_STATES = tuple(state.value for state in WorkloadState)

EVENTS: dict[str, frozenset[str]] = {
    "api_key": frozenset({"created", "revoked", "expired"}),
    "billing": frozenset(
        {
            "credited",
            "topped_up",
            "low_balance",
            "depleted",
            "restored",
            "enforced",
            "transfer_sent",
            "transfer_received",
        }
    ),
    "cluster": frozenset(
        {"created", "updated", "scaled", "deleting", "deleted", *(s.value for s in ClusterStatus)}
    ),
    "endpoint": frozenset({"created", "updated", "scaled", "deleting"}),
    "host": frozenset(
        {
            "registered",
            "recovered",
            "trusted",
            "untrusted",
            "cordoned",
            "uncordoned",
            "draining",
            "removed",
            *(s.value for s in HostStatus),
        }
    ),
    "instance": frozenset(
        {
            "created",
            "destroyed",
            "start_requested",
            "stop_requested",
            "restart_requested",
            *_WORKLOAD_STATES,
        }
    ),
    "org": frozenset({"created", "updated", "suspended", "reactivated"}),
    "replica": frozenset({"placed", "draining", "removed", *_WORKLOAD_STATES}),
    "ssh_key": frozenset({"created", "deleted"}),
    "template": frozenset({"created", "deleted"}),
    "webhook": frozenset({"disabled", "test"}),
    "worker": frozenset({"placed", *(s.value for s in WorkerState), *_WORKLOAD_STATES}),
    "workergroup": frozenset({"created", "updated", "deleted"}),
}
GROUPS = tuple(EVENTS)
_NAME = re.compile(r"^([a-z_]+)\.([a-z_]+|\*)$")


def check_filter(value: str) -> str | None:
    """None when ``value`` is a valid filter, else why not."""
    found = _NAME.match(value)
    if found is None:
        return f"{value!r} is not an event type: <group>.<event> or <group>.*"
    group, event = found.groups()
    if group not in EVENTS:
        return f"{value!r}: no event group {group!r} (one of {', '.join(GROUPS)})"
    if event != "*" and event not in EVENTS[group]:
        known = ", ".join(sorted(EVENTS[group]))
        return f"{value!r}: no such event of {group} (one of {known}, or {group}.*)"
    return None


def matches(filters: list[str], event_type: str) -> bool:
    """Whether an endpoint with ``filters`` (empty: every event) wants ``event_type``."""
    if not filters:
        return True
    group = event_type.split(".", 1)[0]
    return event_type in filters or f"{group}.*" in filters
