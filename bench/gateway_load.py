"""The load generator of the gateway benchmark, run as its own process (one per measured window).

``--concurrency`` clients, each on its own keep-alive connection, send the same streaming chat
completion and read the whole SSE answer, over raw asyncio streams (uvloop when installed): the
cheapest Python client there is, so that it costs the same, and little, for every target.

Two modes:

- closed loop (no ``--rate``): every client sends its next request as soon as the previous answer
  has ended; the completions per second are the highest rate the target sustains at that
  concurrency;
- open loop (``--rate R``): requests are due every ``1/R`` s, each handed to the free client that
  was busy last (so a slow rate keeps a few warm connections rather than 64 that servers close
  for being idle; one closed meanwhile is reopened, and the request sent again). How late each
  was sent (waiting for the timer or for a free client) is recorded as its lag, so a target that
  falls behind shows there rather than hiding behind busy clients.

It runs ``--warmup`` seconds unrecorded, prints ``measuring`` when the measured window starts and
``done`` when it ends (so the parent can read CPU counters at those moments), then one JSON line:
latencies (sent to the last byte), times to the first body byte and send lags, in ms, the
errors, and the window's length.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from event_loops import new_event_loop

TIMEOUT_S = 30.0
clock = time.perf_counter  # not loop.time(): uvloop's has millisecond resolution


class BadAnswer(Exception):
    """The target answered, but not a complete successful stream."""


@dataclass
class Results:
    latency_ms: list[float] = field(default_factory=list)
    ttfb_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass
class Window:
    start: float
    end: float

    def holds(self, t: float) -> bool:
        return self.start <= t < self.end


def request_bytes(url: str, path: str, model: str, key: str | None) -> bytes:
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
            "max_tokens": 32,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    netloc = urlsplit(url).netloc
    lines = [
        f"POST {path} HTTP/1.1",
        f"host: {netloc}",
        "content-type: application/json",
        "accept: application/json",
        "user-agent: gpuyard-bench",
        f"content-length: {len(body)}",
    ]
    if key:
        lines.append(f"authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    """One client's keep-alive connection; reopened after an error or a ``connection: close``."""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.host = host
        self.port = port
        self.request = request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.answered = False  # the current request's answer has begun

    async def exchange(self) -> float:
        """Sends the request and reads the whole answer; returns when its first body byte came.
        A kept-alive connection the server has closed meanwhile is replaced first, and once more
        when it fails before any answer, as HTTP clients do."""
        if self.writer is not None and (self.reader is None or self.reader.at_eof()):
            self.close()  # the server closed it while idle (its keep-alive timeout)
        reused = self.writer is not None
        try:
            return await self._exchange()
        except (asyncio.IncompleteReadError, ConnectionError):
            if not reused or self.answered:
                raise
            self.close()
            return await self._exchange()

    async def _exchange(self) -> float:
        self.answered = False
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.answered = True
        status = int(head[9:12])
        headers = head.lower()
        if b"transfer-encoding: chunked" in headers:
            first, body = await self._read_chunked()
        else:
            length = int(headers.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            body = await self.reader.readexactly(length)
            first = clock()
        if b"connection: close" in headers:
            self.close()
        if status != 200:
            raise BadAnswer(f"HTTP {status}")
        if not body.rstrip().endswith(b"data: [DONE]"):
            raise BadAnswer("stream without [DONE]")
        return first

    async def _read_chunked(self) -> tuple[float, bytes]:
        assert self.reader is not None
        parts: list[bytes] = []
        first = 0.0
        while True:
            size = int((await self.reader.readline()).split(b";", 1)[0], 16)
            if size == 0:
                await self.reader.readline()  # the empty trailer
                return first, b"".join(parts)
            parts.append((await self.reader.readexactly(size + 2))[:-2])
            if not first:
                first = clock()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def one(conn: Connection, due: float, window: Window, results: Results) -> None:
    """One request on ``conn``, recorded when it was due in the measured window."""
    sent = clock()
    try:
        async with asyncio.timeout(TIMEOUT_S):
            first = await conn.exchange()
    except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError, BadAnswer) as exc:
        conn.close()
        if window.holds(due):
            results.errors[str(exc) if isinstance(exc, BadAnswer) else type(exc).__name__] += 1
        return
    done = clock()
    if window.holds(due):
        results.latency_ms.append(round((done - sent) * 1000, 3))
        results.ttfb_ms.append(round((first - sent) * 1000, 3))
        results.lag_ms.append(round((sent - due) * 1000, 3))


async def closed_loop(conns: list[Connection], window: Window, results: Results) -> None:
    async def client(conn: Connection) -> None:
        while (due := clock()) < window.end:
            await one(conn, due, window, results)

    await asyncio.gather(*(client(c) for c in conns))


async def open_loop(
    conns: list[Connection], rate: float, window: Window, results: Results, start: float
) -> None:
    idle: asyncio.LifoQueue[Connection] = asyncio.LifoQueue()  # the warmest connection first
    for c in conns:
        idle.put_nowait(c)
    tasks: set[asyncio.Task[None]] = set()

    async def run(conn: Connection, due: float) -> None:
        try:
            await one(conn, due, window, results)
        finally:
            idle.put_nowait(conn)

    k = 0
    while (due := start + k / rate) < window.end:
        k += 1
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        conn = await idle.get()
        task = asyncio.create_task(run(conn, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)


async def announce(window: Window) -> None:
    """``measuring`` and ``done`` on stdout at the window's edges."""
    await asyncio.sleep(max(0.0, window.start - clock()))
    print("measuring", flush=True)
    await asyncio.sleep(max(0.0, window.end - clock()))
    print("done", flush=True)


async def main(args: argparse.Namespace) -> None:
    url = urlsplit(args.url)
    request = request_bytes(args.url, args.path, args.model, args.key)
    conns = [
        Connection(url.hostname or "127.0.0.1", url.port or 80, request)
        for _ in range(args.concurrency)
    ]
    start = clock() + 0.05
    window = Window(start + args.warmup, start + args.warmup + args.duration)
    results = Results()
    edges = asyncio.create_task(announce(window))
    if args.rate:
        await open_loop(conns, args.rate, window, results, start)
    else:
        await closed_loop(conns, window, results)
    await edges
    for c in conns:
        c.close()
    out = {
        "seconds": window.end - window.start,
        "latency_ms": results.latency_ms,
        "ttfb_ms": results.ttfb_ms,
        "lag_ms": results.lag_ms,
        "errors": dict(results.errors),
    }
    sys.stdout.write(json.dumps(out, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Streaming chat completions, many clients.")
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--model", required=True)
    parser.add_argument("--key", default=None, help="sent as Bearer")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=None, help="open loop at this many req/s")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    return parser.parse_args()


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main(parse_args()))
