"""Shared by the client commands: where the server is, which key to use, and error display.

The server is ``--url`` or ``GPUYARD_URL`` (default http://127.0.0.1:8080). The key is
``--api-key`` or ``GPUYARD_API_KEY``; on the machine that runs ``gpuyard up`` it falls back to the
operator key in ``~/.gpuyard/admin-key`` (or ``GPUYARD_DATA_DIR``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console

from gpuyard.client import ApiError, Client

T = TypeVar("T")
err = Console(stderr=True, soft_wrap=True)

Url = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="GPUYARD_URL", help="API base URL [default: http://127.0.0.1:8080]"
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key", envvar="GPUYARD_API_KEY", help="API key (vl_…) [default: DATA_DIR/admin-key]"
    ),
]
Raw = Annotated[bool, typer.Option("--raw", help="Print JSON instead of a table")]


def _default_key() -> str | None:
    data_dir = Path(os.environ.get("GPUYARD_DATA_DIR", Path.home() / ".gpuyard"))
    path = data_dir / "admin-key"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def run(url: str | None, api_key: str | None, call: Callable[[Client], Awaitable[T]]) -> T:
    """Run one client call; print server refusals and connection problems plainly."""

    async def main() -> T:
        async with Client(url or "http://127.0.0.1:8080", api_key or _default_key()) as client:
            return await call(client)

    try:
        return asyncio.run(main())
    except ApiError as exc:
        err.print(
            f"[bold red]error:[/bold red] {exc.message} [dim]({exc.code}, HTTP {exc.status})[/dim]"
        )
        raise typer.Exit(1) from exc
    except httpx.TransportError as exc:
        err.print(
            f"[bold red]error:[/bold red] cannot reach {url or 'http://127.0.0.1:8080'}: {exc}"
        )
        raise typer.Exit(1) from exc


def parse_env(pairs: list[str] | None) -> dict[str, str]:
    env: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--env")
        env[name] = value
    return env
