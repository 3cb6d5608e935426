"""A load generator run as a child process (gateway_load.py, heartbeat_load.py): it prints
``measuring`` when its measured window starts and ``done`` when it ends, so the parent can read
CPU counters at those moments, then one JSON line of results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

OUTPUT_LIMIT = 64 * 1024 * 1024  # the one JSON line: a few MB at most


@asynccontextmanager
async def load_generator(
    argv: Sequence[str], *, what: str, stdin: bool = False
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The running child (its stdout piped, its stdin too with ``stdin``); killed if the block
    fails, and its exit status checked when the block ends (``what`` names it in the error)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin else None,
        stdout=asyncio.subprocess.PIPE,
        limit=OUTPUT_LIMIT,
    )
    try:
        yield proc
    except BaseException:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        raise
    if await proc.wait() != 0:
        raise RuntimeError(f"{what} exited with {proc.returncode}")


async def expect(stream: asyncio.StreamReader, word: str) -> None:
    line = (await stream.readline()).decode().strip()
    if line != word:
        raise RuntimeError(f"the load generator said {line!r}, expected {word!r}")
