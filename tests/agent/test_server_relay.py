"""The sandbox's one way out: a loopback port relayed to the server the agent reports to.

Real bubblewrap sandboxes (root agent, a uid per workload) and a real HTTP server on loopback
standing for gpuyard's server. A workload that asks for the relay reaches that server, and only
it: not another loopback port, not the server's port directly, not the relay's Unix socket; a
workload that does not ask has no way out at all; an agent that restarts relays again.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.agent.runtimes.process_state import WorkloadDir
from gpuyard.agent.runtimes.server_relay import INSIDE_PORT, SOCKET_NAME
from gpuyard.core.hosts import PortRange
from gpuyard.core.workload import SERVER_RELAY_LABEL, WorkloadSpec

from .conftest import kill_everything
from .sandboxing import last_json, python_command, require_isolation, run_to_end

PROBE = """
import json, os, socket, sys, urllib.request
addr = os.environ.get("REPORT_ADDR")
other, server_port, relay_socket = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
found = {"addr": addr}
def dial(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return "reached"
    except OSError as exc:
        return type(exc).__name__
try:
    found["via_relay"] = urllib.request.urlopen(addr + "/hello.txt", timeout=5).read().decode()
    # the relay dials one address: the Host a request names changes nothing
    asked = urllib.request.Request(addr + "/hello.txt", headers={"Host": f"127.0.0.1:{other}"})
    found["other_host"] = urllib.request.urlopen(asked, timeout=5).read().decode()
except Exception as exc:
    found["via_relay"] = repr(exc)
found["other_port"] = dial(other)
found["server_port"] = dial(server_port)
try:  # stat has no length limit on the path, connect has (107 bytes)
    os.stat(relay_socket)
    found["unix"] = "seen"
except OSError as exc:
    found["unix"] = type(exc).__name__
unix = socket.socket(socket.AF_UNIX)
try:
    unix.connect(relay_socket)
    found["unix_connect"] = "reached"
except OSError as exc:
    found["unix_connect"] = type(exc).__name__
print(json.dumps(found))
"""

LOOP = """
import os, time, urllib.request
while True:
    try:
        urllib.request.urlopen(os.environ["REPORT_ADDR"] + "/hello.txt", timeout=2).read()
        line = "ok"
    except Exception:
        line = "fail"
    with open("seen", "a") as f:
        f.write(line + "\\n")
    time.sleep(0.1)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on loopback: what the agent relays to."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "hello.txt").write_text("from the server")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/hello.txt")
                break
            except httpx.TransportError:
                subprocess.run(["sleep", "0.05"], check=True)
        yield url
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def neighbour() -> Iterator[int]:
    """Another loopback service (the agent's, a database): never reachable from a sandbox."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _spec(workload_id: str, command: str, *, relay: bool) -> WorkloadSpec:
    labels = {SERVER_RELAY_LABEL: "REPORT_ADDR"} if relay else {}
    return WorkloadSpec(
        id=workload_id,
        command=command,
        env={"REPORT_ADDR": "http://gpuyard.example"},
        labels=labels,
        port=8000,
    )


async def test_a_workload_reaches_the_server_through_the_relay_and_nothing_else(
    state_dir: Path, port_range: PortRange, server: str, neighbour: int
) -> None:
    runtime = ProcessRuntime(state_dir, port_range, server_url=server)
    require_isolation(runtime)
    server_port = server.rsplit(":", 1)[1]
    try:
        relay_socket = str(WorkloadDir(state_dir, "w-relay").run / SOCKET_NAME)
        command = python_command(PROBE, str(neighbour), server_port, relay_socket)
        found = last_json(await run_to_end(runtime, _spec("w-relay", command, relay=True)))
        assert found["addr"] == f"http://127.0.0.1:{INSIDE_PORT}"
        assert found["via_relay"] == "from the server"
        assert found["other_host"] == "from the server"
        assert found["other_port"] == "ConnectionRefusedError"
        assert found["server_port"] == "ConnectionRefusedError"
        assert found["unix"] == "PermissionError"  # run/ is the wrapper's
        assert found["unix_connect"] != "reached"

        relay_socket = str(WorkloadDir(state_dir, "w-none").run / SOCKET_NAME)
        command = python_command(PROBE, str(neighbour), server_port, relay_socket)
        found = last_json(await run_to_end(runtime, _spec("w-none", command, relay=False)))
        assert found["addr"] == "http://gpuyard.example"  # not asked: not rewritten, no way out
        assert "URLError" in found["via_relay"]
        assert found["other_port"] == "ConnectionRefusedError"
    finally:
        kill_everything(state_dir)


async def test_an_agent_that_restarts_relays_again(
    state_dir: Path, port_range: PortRange, server: str
) -> None:
    first = ProcessRuntime(state_dir, port_range, server_url=server)
    require_isolation(first)
    seen = WorkloadDir(state_dir, "w-loop").home / "seen"

    def lines() -> list[str]:
        return seen.read_text().split() if seen.exists() else []

    async def after(count: int, want: str) -> None:
        for _ in range(600):
            if want in lines()[count:]:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {want!r} in {lines()[count:]}")

    try:
        await first.start(_spec("w-loop", python_command(LOOP), relay=True))
        await after(0, "ok")
        first.close_server_relays()  # the agent process ends
        mark = len(lines())
        await after(mark, "fail")

        second = ProcessRuntime(state_dir, port_range, server_url=server)
        status = await second.inspect("w-loop")  # a new agent finds it running
        assert status is not None and status.state == "running"
        mark = len(lines())
        await after(mark, "ok")
        await second.stop("w-loop", grace_s=1)
    finally:
        kill_everything(state_dir)
