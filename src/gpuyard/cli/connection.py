"""Shared by the client commands: where the server is, which key to use, and error display.

The server is the first of: ``--url``, ``GPUYARD_URL``, the URL ``gpuyard up`` (or ``gpuyard
server``) recorded in ``DATA_DIR/url``, ``http://127.0.0.1:8080``. The key is ``--api-key`` or
``GPUYARD_API_KEY``; on the machine that runs ``gpuyard up`` it falls back to the operator key in
``DATA_DIR/admin-key``. ``DATA_DIR`` is ``GPUYARD_DATA_DIR`` or ``~/.gpuyard``, as for ``up``.
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
from rich.markup import escape

from gpuyard.client import ApiError, Client

T = TypeVar("T")
err = Console(stderr=True, soft_wrap=True)

DEFAULT_URL = "http://127.0.0.1:8080"

Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        metavar="URL",
        help="The gpuyard API, e.g. http://127.0.0.1:9000.",
        show_default="GPUYARD_URL, else the URL `gpuyard up` recorded in DATA_DIR/url, else "
        + DEFAULT_URL,
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="GPUYARD_API_KEY",
        metavar="KEY",
        help="Your API key (vl_…). DATA_DIR is GPUYARD_DATA_DIR or ~/.gpuyard.",
        show_default="DATA_DIR/admin-key, the operator key of `gpuyard up` on this machine",
    ),
]
Raw = Annotated[bool, typer.Option("--raw", help="Print JSON instead of a table.")]


def _data_dir() -> Path:
    return Path(os.environ.get("GPUYARD_DATA_DIR") or Path.home() / ".gpuyard").expanduser()


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _default_key() -> str | None:
    return _read(_data_dir() / "admin-key")


def resolve_url(url: str | None) -> tuple[str, str]:
    """The server's URL and where it came from (said when it cannot be reached)."""
    if url:
        return url, "--url"
    if os.environ.get("GPUYARD_URL"):
        return os.environ["GPUYARD_URL"], "GPUYARD_URL"
    recorded = _data_dir() / "url"
    found = _read(recorded)
    if found:
        return found, f"recorded by gpuyard up in {recorded}"
    return DEFAULT_URL, "the default"


def run(url: str | None, api_key: str | None, call: Callable[[Client], Awaitable[T]]) -> T:
    """Run one client call; print server refusals and connection problems plainly."""
    base, source = resolve_url(url)

    async def main() -> T:
        async with Client(base, api_key or _default_key()) as client:
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
            f"[bold red]error:[/bold red] cannot reach {escape(base)} ({escape(source)}): "
            f"{escape(str(exc) or type(exc).__name__)}. Is gpuyard running there? Choose the "
            "server with --url or GPUYARD_URL.",
            highlight=False,
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
