"""Waiting on real subprocesses: poll with short waits until a condition holds or a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gpuyard.core.workload import WorkloadState, WorkloadStatus


async def wait_for(
    probe: Callable[[], Awaitable[WorkloadStatus | None]],
    until: Callable[[WorkloadStatus], bool],
    timeout_s: float = 10.0,
) -> WorkloadStatus:
    """Poll a real subprocess's status with short waits until ``until`` holds or time runs out."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        status = await probe()
        if status is not None and until(status):
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s; last status {status}")
        await asyncio.sleep(0.02)


def ended(status: WorkloadStatus) -> bool:
    return status.state is not WorkloadState.RUNNING
