"""Rented instances and how their status reads in the Vast vocabulary.

``actual_status`` comes from what the host's agent last reported about the instance's workload,
and from the host itself: an instance on a host that stopped heartbeating reads ``offline``.

=================  ===============
workload state     actual_status
=================  ===============
pending, starting  loading
running            running
stopped            stopped
exited, failed     exited
unknown            null
=================  ===============
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

_ACTUAL = {
    "pending": "loading",
    "starting": "loading",
    "running": "running",
    "stopped": "stopped",
    "exited": "exited",
    "failed": "exited",
    "unknown": None,
}


def actual_status(workload_state: str | None, host_status: str) -> str | None:
    if host_status in ("offline", "removed"):
        return "offline"
    if workload_state is None:
        return None
    return _ACTUAL.get(workload_state)


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    number: int
    org_id: str
    host_id: str
    machine_id: int
    offer_id: int
    gpu_name: str
    num_gpus: int
    gpu_ram_mb: int | None
    cents_per_hour: int
    image: str | None
    label: str | None
    intended_status: str
    actual_status: str | None
    state: str | None  # the workload state as the agent reported it
    status_msg: str | None
    exit_code: int | None
    host_status: str
    public_ipaddr: str | None
    host_port: int | None
    log_tail: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    destroyed_at: datetime | None
    # What it was asked to run (from its workload spec) and the host it runs on; the Vast
    # dialect shows these.
    port: int | None = None  # the port it listens on inside its container
    command: str | None = None
    onstart: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    disk_gb: float | None = None
    log_size: int | None = None  # where log_tail ends in the whole output, in bytes
    runtype: str | None = None
    geolocation: str | None = None
    inet_up: float | None = None
    inet_down: float | None = None
    host_verified: bool | None = None
