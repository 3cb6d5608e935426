"""Child processes of the gateway benchmark (the fake upstream, LiteLLM's proxy): started in their
own session, ready once an HTTP route answers 200, stopped with SIGTERM to the whole group (then
SIGKILL); and the CPU time of a process with its children."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import psutil
from resource_usage import cpu_seconds
from server_process import log_tail

STOP_TIMEOUT_S = 15.0


@asynccontextmanager
async def child_process(
    argv: Sequence[str],
    *,
    log_path: Path,
    ready_url: str,
    ready_timeout_s: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``argv`` running, its output in ``log_path``, once ``GET ready_url`` answers 200."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    try:
        await _wait_ready(proc, ready_url, ready_timeout_s, log_path)
        yield proc
    finally:
        await _stop(proc)


async def _wait_ready(
    proc: asyncio.subprocess.Process, url: str, timeout_s: float, log_path: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"exited with {proc.returncode}:\n{log_tail(log_path)}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.25)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s:\n{log_tail(log_path)}")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its live children (LiteLLM may run workers)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += cpu_seconds(p)
    return total
