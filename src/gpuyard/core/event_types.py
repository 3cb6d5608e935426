"""The names of events, for webhook filters: ``<group>.<what>`` (``instance.running``,
``billing.credited``), or ``<group>.*`` for every event of a group.

Groups are fixed; what happens within one is open-ended (a workload's states, a cluster's
statuses), so a filter is checked for its group and its shape, and matched exactly or by group.
"""

from __future__ import annotations

import re

GROUPS = (
    "api_key",
    "billing",
    "cluster",
    "endpoint",
    "host",
    "instance",
    "org",
    "replica",
    "ssh_key",
    "template",
    "webhook",
    "worker",
    "workergroup",
)
_NAME = re.compile(r"^([a-z_]+)\.([a-z_]+|\*)$")


def check_filter(value: str) -> str | None:
    """None when ``value`` is a valid filter, else why not."""
    found = _NAME.match(value)
    if found is None:
        return f"{value!r} is not an event type: <group>.<event> or <group>.*"
    if found.group(1) not in GROUPS:
        return f"{value!r}: no event group {found.group(1)!r} (one of {', '.join(GROUPS)})"
    return None


def matches(filters: list[str], event_type: str) -> bool:
    """Whether an endpoint with ``filters`` (empty: every event) wants ``event_type``."""
    if not filters:
        return True
    group = event_type.split(".", 1)[0]
    return event_type in filters or f"{group}.*" in filters
