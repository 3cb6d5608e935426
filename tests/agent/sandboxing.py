"""For tests that need the real sandbox: a root agent's bubblewrap, with a uid per workload.

Without one (no bubblewrap, not root) such a test is skipped with the reason, or fails when
``GPUYARD_TEST_REQUIRE_SANDBOX=1`` (CI installs bubblewrap and runs as root).
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
from typing import Any

import pytest

from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.core.workload import WorkloadSpec

from .polling import ended, wait_for

PY = shlex.quote(sys.executable)


def require_isolation(runtime: ProcessRuntime) -> None:
    if runtime.isolation.isolates:
        return
    reason = f"this host cannot isolate workloads: {runtime.isolation.reason}"
    if os.environ.get("GPUYARD_TEST_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"GPUYARD_TEST_REQUIRE_SANDBOX=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def python_command(script: str, *args: str) -> str:
    """A shell command running ``script`` on the agent's Python (readable in every sandbox)."""
    return " ".join([f"exec {PY} -c {shlex.quote(script)}", *map(shlex.quote, args)])


async def run_to_end(runtime: ProcessRuntime, spec: WorkloadSpec) -> str:
    """Start ``spec``, wait for it to end, and answer its output."""
    await runtime.start(spec)
    status = await wait_for(lambda: runtime.inspect(spec.id), ended, timeout_s=30)
    output = await runtime.logs(spec.id, tail_lines=1000)
    assert status.exit_code == 0, output
    return output


def last_json(output: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return found


async def wait_listening(host: str, port: int, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            assert asyncio.get_running_loop().time() < deadline, f"nothing on {host}:{port}"
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
