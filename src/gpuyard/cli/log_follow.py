"""``gpuyard vms logs --follow``: print an instance's output as its host reports it.

The server keeps each workload's last output and where it ends in bytes (``X-Log-Size``); the
agent sends what is new about every heartbeat. Following asks every ``poll_s`` for the output
after the last offset shown (``?after=``), says so when some was no longer kept or the output
started over, and stops once the workload has ended (``X-Workload-State``) or on Ctrl-C. Where
the runtime does not count bytes (docker), it asks for the last lines and prints those past the
ones it already showed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx

from gpuyard.client import Client
from gpuyard.core.log_tail import new_lines

ENDED = {"exited", "failed", "stopped"}
POLL_S = 1.0
DIFF_LINES = 200

Write = Callable[[str], None]


async def follow(
    c: Client,
    path: str,
    *,
    tail: int,
    out: Write,
    note: Write,
    poll_s: float = POLL_S,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Print the last ``tail`` lines, then what follows, until the workload ends."""
    answer = await c.send("GET", path, params={"tail": tail})
    out(answer.text)
    shown = answer.text.splitlines(keepends=True)
    size = _offset(answer, "x-log-size")
    while answer.headers.get("x-workload-state") not in ENDED:
        await sleep(poll_s)
        if size is None:
            answer = await c.send("GET", path, params={"tail": DIFF_LINES})
            lines = answer.text.splitlines(keepends=True)
            out("".join(new_lines(shown, lines)))
            shown = lines
            size = _offset(answer, "x-log-size")
            continue
        answer = await c.send("GET", path, params={"after": size})
        now, start = _offset(answer, "x-log-size"), _offset(answer, "x-log-start")
        if now is not None and now < size:
            note("(the output started over: the instance was started again)")
        elif start is not None and start > size:
            note(f"({start - size} bytes of output were not kept)")
        out(answer.text)
        size = now


def _offset(answer: httpx.Response, header: str) -> int | None:
    value = answer.headers.get(header)
    return int(value) if value is not None and value.isdigit() else None
