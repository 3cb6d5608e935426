"""A real ``gpuyard server`` in a child process, on a free loopback port, for one benchmark."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True)
class ServerProcess:
    pid: int
    base_url: str
    log_path: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@asynccontextmanager
async def running_server(
    database_url: str,
    *,
    data_dir: Path,
    admin_key: str,
    run_controllers: bool,
    log_level: str = "warning",
    settings: dict[str, str] | None = None,
    command: Sequence[str] | None = None,
) -> AsyncIterator[ServerProcess]:
    """``python -m gpuyard.cli.main server`` (or ``command``) on ``database_url``, ready once
    ``/readyz`` says so. ``settings`` are more ``GPUYARD_*`` variables. Its output goes to
    ``data_dir/server.log``; it is stopped with SIGTERM (then SIGKILL)."""
    port = free_port()
    env = {
        **os.environ,
        "GPUYARD_DATABASE_URL": database_url,
        "GPUYARD_ADMIN_KEY": admin_key,
        "GPUYARD_HOST": "127.0.0.1",
        "GPUYARD_PORT": str(port),
        "GPUYARD_DATA_DIR": str(data_dir),
        "GPUYARD_LOG_LEVEL": log_level,
        "GPUYARD_RUN_CONTROLLERS": "true" if run_controllers else "false",
        **(settings or {}),
    }
    log_path = data_dir / "server.log"
    with _log_file(log_path) as log:
        proc = await asyncio.create_subprocess_exec(
            *(command or [sys.executable, "-m", "gpuyard.cli.main", "server"]),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(proc, base_url, log_path)
        yield ServerProcess(pid=proc.pid, base_url=base_url, log_path=log_path)
    finally:
        await _stop(proc)


def _log_file(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


async def _wait_ready(proc: asyncio.subprocess.Process, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(
                    f"gpuyard server exited with {proc.returncode}:\n{log_tail(log_path)}"
                )
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"gpuyard server not ready after {READY_TIMEOUT_S:.0f} s")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
