"""One measured window of the gateway benchmark: the load generator (gateway_load.py) run as a
child process against one target, with the CPU time of every process involved read at the
window's edges (the load generator prints ``measuring`` and ``done`` there)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from gateway_process import tree_cpu_seconds
from load_child import expect, load_generator
from report import Latency

LOADGEN = Path(__file__).with_name("gateway_load.py")


@dataclass(frozen=True, slots=True)
class Target:
    name: str  # direct, gpuyard, litellm
    base_url: str
    key: str | None
    pid: int | None  # the server process between client and upstream; None when direct


@dataclass(frozen=True, slots=True)
class Cpu:
    """CPU seconds used so far: by the target's server, the upstream, the load generator, and the
    whole machine (busy and total, summed over all cores)."""

    wall: float
    server: float
    upstream: float
    loadgen: float
    busy: float
    total: float

    @classmethod
    def now(cls, server_pid: int | None, upstream_pid: int, loadgen_pid: int) -> Cpu:
        machine = psutil.cpu_times()
        total = sum(machine)
        return cls(
            wall=time.perf_counter(),
            server=tree_cpu_seconds(server_pid) if server_pid else 0.0,
            upstream=tree_cpu_seconds(upstream_pid),
            loadgen=tree_cpu_seconds(loadgen_pid),
            busy=total - machine.idle - getattr(machine, "iowait", 0.0),
            total=total,
        )


@dataclass
class Measurement:
    target: str
    round: int
    rate: float | None  # None: closed loop (the highest sustained rate)
    seconds: float = 0.0
    latency: Latency = field(default_factory=lambda: Latency.of([]))
    ttfb: Latency = field(default_factory=lambda: Latency.of([]))
    lag: Latency = field(default_factory=lambda: Latency.of([]))
    errors: dict[str, int] = field(default_factory=dict)
    before: Cpu | None = None
    after: Cpu | None = None
    skipped: str | None = None

    @property
    def completed(self) -> int:
        return self.latency.n

    @property
    def rps(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def cpu(self, part: str) -> float:
        """Share of one core that ``part`` (server, upstream, loadgen) used in the window."""
        if self.before is None or self.after is None:
            return float("nan")
        wall = self.after.wall - self.before.wall
        used: float = getattr(self.after, part) - getattr(self.before, part)
        return used / wall

    def machine_busy(self) -> float:
        """Share of the whole machine (all cores) that was busy in the window."""
        if self.before is None or self.after is None:
            return float("nan")
        total = self.after.total - self.before.total
        return (self.after.busy - self.before.busy) / total if total else float("nan")


async def measure(
    target: Target,
    *,
    round_no: int,
    rate: float | None,
    model: str,
    concurrency: int,
    warmup: float,
    duration: float,
    upstream_pid: int,
    profile: Path | None = None,
) -> Measurement:
    """One window against ``target``; with ``profile``, py-spy records the target's server
    during it into that file (raw collapsed stacks)."""
    argv = [
        sys.executable,
        str(LOADGEN),
        "--url",
        target.base_url,
        "--model",
        model,
        "--concurrency",
        str(concurrency),
        "--warmup",
        str(warmup),
        "--duration",
        str(duration),
        *(["--key", target.key] if target.key else []),
        *(["--rate", str(rate)] if rate else []),
    ]
    m = Measurement(target.name, round_no, rate)
    async with load_generator(argv, what=f"the load generator against {target.name}") as proc:
        assert proc.stdout is not None
        await expect(proc.stdout, "measuring")
        m.before = Cpu.now(target.pid, upstream_pid, proc.pid)
        spy = await start_py_spy(target.pid, duration, profile) if profile and target.pid else None
        await expect(proc.stdout, "done")
        m.after = Cpu.now(target.pid, upstream_pid, proc.pid)
        out = json.loads(await proc.stdout.readline())
        if spy is not None:
            await spy.wait()
    m.seconds = out["seconds"]
    m.latency = Latency.of(out["latency_ms"])
    m.ttfb = Latency.of(out["ttfb_ms"])
    m.lag = Latency.of(out["lag_ms"])
    m.errors = out["errors"]
    return m


async def start_py_spy(pid: int, duration: float, out: Path) -> asyncio.subprocess.Process:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    return await asyncio.create_subprocess_exec(
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--duration",
        str(max(1, int(duration))),
        "--rate",
        "100",
        "--nonblocking",  # do not pause the server to sample it
        "--gil",  # only the thread holding the GIL: where Python's CPU goes
        "--format",
        "raw",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
