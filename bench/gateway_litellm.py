"""LiteLLM's proxy as the gateway benchmark's point of comparison, in a virtualenv of its own.

The virtualenv (default ``~/.cache/gpuyard-bench/litellm-venv``) is made on first use with
``pip install 'litellm[proxy]'`` and reused after. The proxy runs with one model routed to the
fake upstream (``openai/<model>``, ``api_base`` the upstream's ``/v1``), a master key (it refuses
to start without one; clients send it as gpuyard's clients send theirs), no database, no
callbacks, the local model cost map (no network at start-up), logging at ERROR and ``--num_workers``
uvicorn processes (1 by default: one process, as gpuyard runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gateway_process import child_process
from server_process import free_port

DEFAULT_VENV = Path.home() / ".cache" / "gpuyard-bench" / "litellm-venv"
REQUIREMENT = "litellm[proxy]"
READY_TIMEOUT_S = 240.0  # it imports a lot, slowly on a busy 2-core machine
INSTALL_TIMEOUT_S = 1800.0
NOT_INHERITED = ("DATABASE_URL", "REDIS_HOST", "REDIS_URL", "REDIS_PORT", "LITELLM_MASTER_KEY")


class Unavailable(Exception):
    """LiteLLM cannot be installed or started here; the message says why."""


@dataclass(frozen=True, slots=True)
class LiteLLM:
    base_url: str
    key: str
    pid: int
    version: str


VERSION_OF = "import importlib.metadata as m; print(m.version('litellm'))"


def ensure_venv(venv: Path) -> str:
    """The virtualenv with LiteLLM's proxy in it, made when missing; returns LiteLLM's version."""
    if not (venv / "bin" / "litellm").exists():
        _install(venv)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", VERSION_OF], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise Unavailable(f"litellm in {venv} does not import: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def _install(venv: Path) -> None:
    print(f"  .. installing {REQUIREMENT} into {venv} (once; minutes)", file=sys.stderr, flush=True)
    log = venv.parent / "litellm-install.log"
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = (
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "--quiet", REQUIREMENT],
    )
    with log.open("w") as out:
        for argv in steps:
            failed = _run_step(argv, out)
            if failed is not None:
                shutil.rmtree(venv, ignore_errors=True)
                tail = " / ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
                raise Unavailable(f"could not install {REQUIREMENT} ({failed}): {tail}")


def _run_step(argv: list[str], out: IO[str]) -> str | None:
    """None when ``argv`` succeeded, else what went wrong."""
    try:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return repr(exc)
    return None if done.returncode == 0 else f"{argv[0]} exited with {done.returncode}"


def config(model: str, upstream_url: str) -> dict[str, object]:
    return {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": f"{upstream_url}/v1",
                    "api_key": "x",
                },
            }
        ],
        "litellm_settings": {"set_verbose": False, "request_timeout": 600, "telemetry": False},
        "general_settings": {},
    }


@asynccontextmanager
async def litellm_serving(
    model: str, upstream_url: str, *, venv: Path, workers: int, workdir: Path
) -> AsyncIterator[LiteLLM]:
    """LiteLLM's proxy on a free port, routing ``model`` to the upstream."""
    version = await asyncio.to_thread(ensure_venv, venv)
    path = workdir / "litellm.yaml"
    path.write_text(json.dumps(config(model, upstream_url), indent=2))  # JSON is YAML
    key = "sk-" + secrets.token_urlsafe(32)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(
        LITELLM_MASTER_KEY=key,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_LOG="ERROR",
        LITELLM_TELEMETRY="False",
    )
    argv = [
        str(venv / "bin" / "litellm"),
        "--config",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        str(workers),
    ]
    base_url = f"http://127.0.0.1:{port}"
    async with contextlib.AsyncExitStack() as stack:
        try:
            proc = await stack.enter_async_context(
                child_process(
                    argv,
                    log_path=workdir / "litellm.log",
                    ready_url=f"{base_url}/health/readiness",
                    ready_timeout_s=READY_TIMEOUT_S,
                    env=env,
                    cwd=workdir,
                )
            )
        except RuntimeError as exc:
            raise Unavailable(f"LiteLLM's proxy did not start: {exc}") from exc
        yield LiteLLM(base_url, key, proc.pid, version)
