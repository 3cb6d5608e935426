"""What the process runtime's sandbox adds to a request: its port relay, against a bare process.

The same workload (a small asyncio echo server on ``$PORT``, started by the real
``ProcessRuntime``) runs twice: unsandboxed, listening on the host port itself, and in the
bubblewrap sandbox, where the wrapper relays the host port into the sandbox's own loopback
(``agent/runtimes/process_relay.py``). One client sends a small request and reads the answer, one
at a time, alternating between the two targets so that noise hits both alike:

- ``kept``: on one kept-alive connection (how the gateway talks to a replica);
- ``new``: a new connection for each request (connect, one round trip, close).

Then the time to move 64 MiB through each. The target is the gateway's: an added p50 under 1 ms.

    .venv/bin/python bench/sandbox_relay.py            # ~20 s
    .venv/bin/python bench/sandbox_relay.py --quick    # ~5 s
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

from report import Latency, idle_load, machine_line, markdown_table

from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.agent.runtimes.sandbox import SandboxConfig, SandboxMode
from gpuyard.core.hosts import PortRange
from gpuyard.core.workload import WorkloadSpec

ECHO = """
import asyncio, os
async def echo(reader, writer):
    while data := await reader.read(1 << 16):
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", int(os.environ["PORT"]))
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""
REQUEST = b"x" * 512
BULK = 64 << 20


async def _wait(port: int) -> None:
    for _ in range(500):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        return
    raise RuntimeError(f"nothing answers on port {port}")


async def _round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    began = time.perf_counter()
    writer.write(REQUEST)
    await reader.readexactly(len(REQUEST))
    return (time.perf_counter() - began) * 1000


async def _kept(ports: dict[str, int], n: int) -> dict[str, list[float]]:
    conns = {name: await asyncio.open_connection("127.0.0.1", p) for name, p in ports.items()}
    times: dict[str, list[float]] = {name: [] for name in ports}
    for _ in range(n):
        for name in random.sample(list(ports), len(ports)):
            times[name].append(await _round_trip(*conns[name]))
    for _, writer in conns.values():
        writer.close()
    return times


async def _new(ports: dict[str, int], n: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in ports}
    for _ in range(n):
        for name in random.sample(list(ports), len(ports)):
            began = time.perf_counter()
            reader, writer = await asyncio.open_connection("127.0.0.1", ports[name])
            writer.write(REQUEST)
            await reader.readexactly(len(REQUEST))
            writer.close()
            await writer.wait_closed()
            times[name].append((time.perf_counter() - began) * 1000)
    return times


async def _bulk(port: int) -> float:
    """MiB/s echoed through ``port``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunk = b"y" * (1 << 20)

    async def send() -> None:
        for _ in range(BULK // len(chunk)):
            writer.write(chunk)
            await writer.drain()

    began = time.perf_counter()
    sending = asyncio.create_task(send())
    await reader.readexactly(BULK)
    await sending
    writer.close()
    return (BULK >> 20) / (time.perf_counter() - began)


def _us(milliseconds: float) -> str:
    return f"{milliseconds * 1000:.0f}"


async def main(quick: bool) -> None:
    print(idle_load(1.0 if quick else 2.0), file=sys.stderr)
    n = 300 if quick else 3000
    with tempfile.TemporaryDirectory() as tmp:
        runtimes = {
            "bare": ProcessRuntime(
                Path(tmp) / "bare",
                PortRange(start=45100, end=45199),
                sandbox=SandboxConfig(mode=SandboxMode.OFF),
            ),
            "sandboxed": ProcessRuntime(Path(tmp) / "sandboxed", PortRange(start=45200, end=45299)),
        }
        if runtimes["sandboxed"].sandbox is None:
            raise SystemExit(f"no sandbox here: {runtimes['sandboxed'].isolation.reason}")
        command = f"exec {shlex.quote(sys.executable)} -c {shlex.quote(ECHO)}"
        ports: dict[str, int] = {}
        try:
            for name, runtime in runtimes.items():
                status = await runtime.start(WorkloadSpec(id=f"wl_{name}", command=command, port=1))
                assert status.host_port is not None
                ports[name] = status.host_port
                await _wait(status.host_port)
            kept, new = await _kept(ports, n), await _new(ports, n // 3)
            bulk = {name: await _bulk(port) for name, port in ports.items()}
        finally:
            for name, runtime in runtimes.items():
                await runtime.remove(f"wl_{name}")
    rows = []
    for label, times in (("kept", kept), ("new", new)):
        bare, boxed = Latency.of(times["bare"]), Latency.of(times["sandboxed"])
        for name, lat in (("bare", bare), ("sandboxed", boxed)):
            added = "" if name == "bare" else _us(lat.p50 - bare.p50)
            rows.append([label, name, lat.n, _us(lat.p50), _us(lat.p90), _us(lat.p99), added])
    print(machine_line())
    print()
    headers = ["connection", "target", "n", "p50 µs", "p90 µs", "p99 µs", "added p50 µs"]
    print(markdown_table(headers, rows))
    print()
    print(
        markdown_table(
            ["target", "64 MiB echoed, MiB/s"],
            [[name, f"{rate:.0f}"] for name, rate in bulk.items()],
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (~5 s)")
    asyncio.run(main(parser.parse_args().quick))
