"""Fixtures for agent tests: a state dir, a port range, and a process runtime that never leaks."""

from __future__ import annotations

import contextlib
import os
import random
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.agent.runtimes.process_state import WorkloadDir, is_alive, workload_ids
from gpuyard.core.hosts import PortRange


@pytest.fixture
def port_range() -> PortRange:
    """A hundred ports below Linux's ephemeral range (32768 and up), where no other process's
    outgoing connection or bind-to-0 listener lands by chance."""
    start = random.randrange(20000, 32600, 100)
    return PortRange(start=start, end=start + 99)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def kill_everything(state_dir: Path) -> None:
    """SIGKILL the process group of every live workload under ``state_dir``."""
    for workload_id in workload_ids(state_dir):
        record = WorkloadDir(state_dir, workload_id).load()
        if record is not None and record.pid and is_alive(record.pid, record.create_time):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pid, signal.SIGKILL)


@pytest.fixture
async def runtime(state_dir: Path, port_range: PortRange) -> AsyncIterator[ProcessRuntime]:
    rt = ProcessRuntime(state_dir, port_range)
    try:
        yield rt
    finally:
        kill_everything(state_dir)
