"""The load generator of the heartbeat benchmark, run as its own process (one per measured window).

It reads a plan (JSON, written by heartbeats.py): the server's base URL, the heartbeat path, the
period, the spacing of the agents' phases, the window's length, how long after start-up the first
heartbeat is due, whether the agents share one pool of connections, and per agent its credential
and the exact heartbeat body it sends. Agent ``i`` sends ``POST`` of its body at ``t0 + i *
spacing + k * period`` (a fixed schedule: a slow server does not slow the offered load) on its
own keep-alive connection, over raw asyncio streams (uvloop when installed) with the request's
bytes built once, and reads the answer's head and body (``content-length`` or chunked). A
connection the server closed while idle is reopened, and a request that failed on a reused
connection before any answer is sent once more, as HTTP clients do.

Every connection is opened before ``t0``. It prints ``measuring`` at ``t0`` and ``done`` once
every heartbeat due before the window's end has been answered (so the parent can read CPU
counters at those moments), waits for a line (or the end) on stdin, then prints one JSON line:
the window's length and, per heartbeat, when it was due, sent and answered (ms from ``t0``) and
its outcome when not ``ok`` (``HTTP nnn`` or an exception's type name).

    python bench/heartbeat_load.py PLAN.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from event_loops import new_event_loop

TIMEOUT_S = 30.0  # as the setup's httpx clients
CONNECT_CONCURRENCY = 64
clock = time.perf_counter  # not loop.time(): uvloop's has millisecond resolution
Row = list[float | str]  # due, sent, answered (ms from t0)[, outcome when not ok]


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    tls: ssl.SSLContext | None

    @classmethod
    def of(cls, url: str) -> Target:
        parts = urlsplit(url)
        https = parts.scheme == "https"
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or (443 if https else 80),
            ssl.create_default_context() if https else None,
        )


def request_bytes(url: str, path: str, credential: str, body: bytes) -> bytes:
    head = [
        f"POST {path} HTTP/1.1",
        f"host: {urlsplit(url).netloc}",
        f"authorization: Bearer {credential}",
        "content-type: application/json",
        "accept: application/json",
        "user-agent: gpuyard-bench",
        f"content-length: {len(body)}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Connection:
    """One keep-alive connection; reopened after an error or a ``connection: close``."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.answered = False  # the current request's answer has begun

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.target.host, self.target.port, ssl=self.target.tls
        )

    async def exchange(self, request: bytes) -> int:
        """Sends ``request``, reads the whole answer and returns its status. A kept-alive
        connection the server has closed meanwhile is replaced first, and once more when it
        fails before any answer."""
        if self.writer is not None and (self.reader is None or self.reader.at_eof()):
            self.close()  # the server closed it while idle (its keep-alive timeout)
        reused = self.writer is not None
        try:
            return await self._exchange(request)
        except (asyncio.IncompleteReadError, ConnectionError):
            if not reused or self.answered:
                raise
            self.close()
            return await self._exchange(request)

    async def _exchange(self, request: bytes) -> int:
        self.answered = False
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.answered = True
        status = int(head[9:12])
        headers = head.lower()
        if b"\r\ntransfer-encoding: chunked" in headers:
            await self._skip_chunked()
        elif b"\r\ncontent-length:" in headers:
            length = int(headers.split(b"\r\ncontent-length:", 1)[1].split(b"\r\n", 1)[0])
            await self.reader.readexactly(length)
        if b"\r\nconnection: close" in headers:
            self.close()
        return status

    async def _skip_chunked(self) -> None:
        assert self.reader is not None
        while True:
            size = int((await self.reader.readline()).split(b";", 1)[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # the (empty) trailer
                return
            await self.reader.readexactly(size + 2)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Pool:
    """Idle connections, the warmest first; a new one when none is idle, as an unbounded HTTP
    client pool does. Each agent has its own, holding its one connection, or all share one (the
    plan's ``shared``)."""

    def __init__(self, target: Target, connections: int = 0) -> None:
        self.target = target
        self.idle = [Connection(target) for _ in range(connections)]

    def take(self) -> Connection:
        return self.idle.pop() if self.idle else Connection(self.target)

    def give(self, conn: Connection) -> None:
        self.idle.append(conn)


@dataclass(frozen=True, slots=True)
class Schedule:
    t0: float
    end: float
    period: float


async def agent_loop(
    request: bytes,
    phase: float,
    schedule: Schedule,
    pool: Pool,
    rows: list[Row],
) -> None:
    """One agent's heartbeats due in the window, each recorded in ``rows``."""
    t0 = schedule.t0
    k = 0
    while (due := t0 + phase + k * schedule.period) < schedule.end:
        k += 1
        await sleep_until(due)
        conn = pool.take()
        sent = clock()
        try:
            async with asyncio.timeout(TIMEOUT_S):
                status = await conn.exchange(request)
            outcome = "ok" if status == 200 else f"HTTP {status}"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            conn.close()  # TimeoutError is an OSError
            outcome = type(e).__name__
        done = clock()
        pool.give(conn)
        row: Row = [ms(due - t0), ms(sent - t0), ms(done - t0)]
        if outcome != "ok":
            row.append(outcome)
        rows.append(row)


async def sleep_until(t: float) -> None:
    """Returns once ``clock()`` has reached ``t`` (uvloop's timers round to the millisecond, so
    one may fire a little early)."""
    delay = t - clock()
    while delay > 0:
        await asyncio.sleep(delay)
        delay = t - clock()


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


async def open_all(conns: list[Connection]) -> None:
    """Opens every connection before the window (a failed one is opened again when used)."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(conn: Connection) -> None:
        async with gate:
            with contextlib.suppress(OSError):
                await conn.open()

    await asyncio.gather(*(one(c) for c in conns))


async def main(plan: dict[str, Any]) -> None:
    url, path = plan["url"], plan["path"]
    target = Target.of(url)
    agents = plan["agents"]
    requests = [request_bytes(url, path, a["credential"], a["body"].encode()) for a in agents]
    shared = [Pool(target)] * len(agents)
    pools = shared if plan["shared"] else [Pool(target, 1) for _ in agents]
    await open_all([c for p in pools for c in p.idle])
    gc.collect()
    gc.freeze()  # the plan and the connections live to the end: keep the collector off them
    t0 = clock() + plan["start_in_s"]
    schedule = Schedule(t0, t0 + plan["duration_s"], plan["period_s"])
    rows: list[Row] = []
    loops = [
        asyncio.create_task(agent_loop(r, i * plan["spacing_s"], schedule, pool, rows))
        for i, (r, pool) in enumerate(zip(requests, pools, strict=True))
    ]
    await asyncio.sleep(max(0.0, t0 - clock()))
    print("measuring", flush=True)
    await asyncio.gather(*loops)
    seconds = clock() - t0
    print("done", flush=True)
    sys.stdin.readline()  # the parent has read the CPU counters (and this process still runs)
    for pool in {id(p): p for p in pools}.values():
        for c in pool.idle:
            c.close()
    sys.stdout.write(json.dumps({"seconds": seconds, "rows": rows}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Heartbeats of many agents on a fixed schedule.")
    parser.add_argument("plan", type=Path, help="the plan, as heartbeats.py writes it")
    return parser.parse_args()


if __name__ == "__main__":
    the_plan = json.loads(parse_args().plan.read_text())
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main(the_plan))
