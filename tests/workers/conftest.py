"""Starting the built-in workers as real subprocesses, launched the way the agent's ``process``
runtime launches them: the argv and environment come from ``build_argv``/``build_env`` for the
image ``gpuyard/worker:<kind>`` (so ``PORT`` is the only way the port arrives, ``HOME`` is an
empty directory with no Hugging Face cache, and nothing else of our environment leaks in).

The optional dependencies (the ``workers`` extra) are needed; a test module whose libraries are
missing is skipped with the reason, or fails when ``GPUYARD_TEST_REQUIRE_WORKERS=1`` (CI).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gpuyard.agent.runtimes.process_command import build_argv, build_env
from gpuyard.core.workload import WorkloadSpec

STARTUP_DEADLINE_S = 100.0  # under pytest-timeout's 120 s, so a slow start says why
STOP_DEADLINE_S = 20.0
PASSED_THROUGH = ("PYTHONPATH",)  # so a checkout that is not installed still finds gpuyard


def require(*modules: str) -> None:
    """Skip the calling module unless ``modules`` are importable (fail instead in CI)."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return
    reason = (
        f"the workers extra is not installed (missing {', '.join(missing)}); "
        "pip install -e '.[dev,workers]'"
    )
    if os.environ.get("GPUYARD_TEST_REQUIRE_WORKERS") == "1":
        pytest.fail(f"GPUYARD_TEST_REQUIRE_WORKERS=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def base_url(self) -> str:
        """For ``openai.OpenAI(base_url=…)``."""
        return f"{self.url}/v1"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, as the agent stops a workload; the exit code (-15: uvicorn re-raises it)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the worker ignored SIGTERM:\n{self.output()[-3000:]}") from None


def launch(kind: str, args: list[str], home: Path, host: str = "127.0.0.1") -> Worker:
    """Start ``gpuyard/worker:<kind>`` with ``args`` on a free port of ``host`` (given, like the
    port, only through the environment the runtime builds); return at once."""
    port = free_port()
    spec = WorkloadSpec(id=f"wl_{kind}", image=f"gpuyard/worker:{kind}", args=args, port=8000)
    env = build_env(spec, host_port=port, home=str(home), listen_host=host)
    env.update({name: os.environ[name] for name in PASSED_THROUGH if name in os.environ})
    log = home / "output.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            build_argv(spec, python=sys.executable),
            env=env,
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Worker(process, f"http://{host}:{port}", log)


def wait_healthy(worker: Worker, deadline_s: float = STARTUP_DEADLINE_S) -> list[int]:
    """Poll ``GET /health`` until 200; the statuses seen on the way (503 while loading)."""
    seen: list[int] = []
    deadline = time.monotonic() + deadline_s
    with httpx.Client(timeout=2.0) as client:
        while True:
            if worker.process.poll() is not None:
                code = worker.process.returncode
                raise AssertionError(f"the worker exited with {code}:\n{worker.output()[-3000:]}")
            try:
                status = client.get(f"{worker.url}/health").status_code
            except httpx.TransportError:
                status = 0
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == 200:
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not healthy within {deadline_s}s:\n{worker.output()[-3000:]}"
                )
            time.sleep(0.1)


@contextmanager
def running(kind: str, args: list[str], home: Path, host: str = "127.0.0.1") -> Iterator[Worker]:
    worker = launch(kind, args, home, host)
    try:
        wait_healthy(worker)
        yield worker
    finally:
        worker.stop()
