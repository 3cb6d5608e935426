"""HTTP clients for webhook delivery, side by side: CPU per POST (this process and the receiver,
its own process answering 204) sending batches of 100 concurrent POSTs to one origin, the
variants interleaved round by round.

    .venv/bin/python bench/webhook_clients.py            # ~1 min
    .venv/bin/python bench/webhook_clients.py --posts 1000 --rounds 1

Variants: httpx with a client per batch (the dispatcher before), httpx with one client kept
(its pool at 100 and at 8 connections), gpuyard's own client (``gpuyard.http1``, 16 requests in
flight as the dispatcher allows, and 100), and aiohttp where it is installed (not a dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import psutil
from report import machine_line, markdown_table
from server_process import free_port

from gpuyard.http1.client import HttpClient

HERE = Path(__file__).resolve().parent
BODY = b'{"created_at":"2026-12-05T21:00:00Z","data":{"i":1},"id":"evt_0","type":"org.updated"}'
HEADERS = {
    "webhook-id": "evt_0",
    "webhook-timestamp": "1796504400",
    "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
    "content-type": "application/json",
    "user-agent": "gpuyard-webhooks",
}
BATCH = 100
Variant = Callable[[str, int], Awaitable[None]]


async def httpx_per_batch(url: str, posts: int) -> None:
    for _ in range(0, posts, BATCH):
        async with httpx.AsyncClient(trust_env=False) as client:
            await asyncio.gather(
                *(client.post(url, content=BODY, headers=HEADERS) for _ in range(BATCH))
            )


def httpx_kept(connections: int) -> Variant:
    async def run(url: str, posts: int) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(trust_env=False, limits=limits) as client:
            for _ in range(0, posts, BATCH):
                await asyncio.gather(
                    *(client.post(url, content=BODY, headers=HEADERS) for _ in range(BATCH))
                )

    return run


def http1(in_flight: int) -> Variant:
    headers = [(k.encode(), v.encode()) for k, v in HEADERS.items()]

    async def run(url: str, posts: int) -> None:
        client = HttpClient(max_idle=in_flight)
        slots = asyncio.Semaphore(in_flight)

        async def one() -> int:
            async with slots:
                response = await client.request(url, "POST", "/hook", headers, BODY)
                try:
                    while await response.read():
                        pass
                finally:
                    response.close()
                return response.status_code

        for _ in range(0, posts, BATCH):
            assert set(await asyncio.gather(*(one() for _ in range(BATCH)))) == {204}
        await client.aclose()

    return run


def aiohttp_kept(per_host: int) -> Variant | None:
    try:
        import aiohttp
    except ImportError:
        return None

    async def run(url: str, posts: int) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=per_host)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> int:
                async with session.post(
                    url, data=BODY, headers=HEADERS, allow_redirects=False
                ) as response:
                    await response.read()
                    return response.status

            for _ in range(0, posts, BATCH):
                assert set(await asyncio.gather(*(one() for _ in range(BATCH)))) == {204}

    return run


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=3000, help="POSTs per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    variants: dict[str, Variant] = {
        "httpx, a client per batch (before)": httpx_per_batch,
        "httpx, one client kept, pool 100": httpx_kept(100),
        "httpx, one client kept, pool 8": httpx_kept(8),
        "gpuyard.http1, 16 in flight (now)": http1(16),
        "gpuyard.http1, 100 in flight": http1(100),
    }
    if (aio := aiohttp_kept(16)) is not None:
        variants["aiohttp, 16 per host"] = aio
    port = free_port()
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "webhook_receiver.py"), str(port)
    )
    url = f"http://127.0.0.1:{port}/hook"
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    await client.post(url)
                    break
                await asyncio.sleep(0.05)
        other = psutil.Process(receiver.pid)
        for _ in range(args.rounds):
            order = list(variants)
            random.shuffle(order)
            for name in order:
                theirs = sum(other.cpu_times()[:2])
                began, cpu = time.perf_counter(), time.process_time()
                await variants[name](url, args.posts)
                wall, cpu = time.perf_counter() - began, time.process_time() - cpu
                theirs = sum(other.cpu_times()[:2]) - theirs
                runs[name].append((args.posts / wall, cpu / args.posts, theirs / args.posts))
    finally:
        receiver.terminate()
        await receiver.wait()

    def spread(values: list[float], form: str) -> str:
        low, high = min(values), max(values)
        return format(low, form) if low == high else f"{low:{form}}-{high:{form}}"

    rows = [
        [
            name,
            spread([r[0] for r in rs], ",.0f"),
            spread([r[1] * 1e3 for r in rs], ".3f"),
            spread([r[2] * 1e3 for r in rs], ".3f"),
        ]
        for name, rs in runs.items()
    ]
    print(f"Webhook HTTP clients, {args.posts} POSTs x {args.rounds} rounds ({machine_line()})\n")
    print(markdown_table(["client", "POSTs/s", "client CPU ms/POST", "receiver CPU ms/POST"], rows))


if __name__ == "__main__":
    asyncio.run(main())
