"""The real ``gpuyard`` command in a subprocess, on a free port and a fresh data dir.

``gpuyard(*args)`` (the fixture in conftest.py) starts it in its own session; ``Server`` waits
for it by polling ``/readyz`` with a deadline, sends it signals as a terminal would, and kills
whatever is left of its process group at teardown, so a failing assertion never leaves a server
behind. ``inherit`` starts it the way a shell starts a background job (``gpuyard up &``: SIGINT
ignored) or with SIGTERM ignored too.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT_S = 45.0
STOP_TIMEOUT_S = 20.0
KEY_LINE = re.compile(r"^vl_[A-Za-z0-9_-]{43,}$")

# How the parent leaves SIGINT/SIGTERM to the command: as a terminal does, or as `cmd &` in a
# script (SIGINT ignored) or nohup-like wrappers that ignore both.
INHERITED = {
    "default": "",
    "sigint-ignored": "trap '' INT; ",
    "both-ignored": "trap '' INT TERM; ",
}


def as_from_a_terminal() -> None:
    """``preexec_fn``: the wrapper starts with SIGINT and SIGTERM at their defaults, as from a
    terminal, whatever this test process inherited (a suite started in the background has
    SIGINT ignored, and sh cannot reset a signal ignored on entry); ``INHERITED`` then sets
    what each case wants."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def gpuyard_command() -> list[str]:
    script = Path(sys.executable).with_name("gpuyard")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "gpuyard.cli.main"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def base_env(home: Path) -> dict[str, str]:
    """The test's environment without any GPUYARD_* setting of the developer's shell; the local
    agent runs the process runtime even where a Docker engine answers, unless a test asks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUYARD_")}
    env.update(HOME=str(home), NO_COLOR="1", TERM="dumb", COLUMNS="200", PYTHONUNBUFFERED="1")
    env["GPUYARD_RUNTIME"] = "process"
    return env


@dataclass
class Server:
    popen: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    logs: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout(self) -> str:
        return (self.logs / "stdout").read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return (self.logs / "stderr").read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"

    def printed_keys(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if KEY_LINE.match(line.strip())]

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll /readyz until it answers 200 (under ``up``: the local host has joined too);
        fail at once if the process exits."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"gpuyard exited with {self.popen.returncode} before serving\n{self.output()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"gpuyard did not serve within {timeout_s}s\n{self.output()}")
            time.sleep(0.05)

    def wait_exit(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            message = f"gpuyard still running after {timeout_s}s\n{self.output()}"
            raise AssertionError(message) from None

    def interrupt(self) -> int:
        """Ctrl-C as a terminal sends it: SIGINT to the process group; returns the exit code."""
        os.killpg(self.popen.pid, signal.SIGINT)
        return self.wait_exit()

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):  # anything left in its group
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


def me(server: Server, key: str) -> httpx.Response:
    return httpx.get(
        f"{server.base_url}/v1/me", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def assert_no_traceback(server: Server) -> None:
    assert "Traceback" not in server.stdout + server.stderr, server.output()


def wait_for_hosts(server: Server, key: str, count: int) -> list[dict[str, object]]:
    """Poll the operator's host list until ``count`` hosts are ready (the agent registers and
    heartbeats on its own schedule)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        r = httpx.get(
            f"{server.base_url}/v1/admin/hosts",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        hosts: list[dict[str, object]] = r.json()["data"]
        if len([h for h in hosts if h["status"] == "ready"]) >= count:
            return hosts
        if time.monotonic() > deadline:
            raise AssertionError(f"hosts after {START_TIMEOUT_S}s: {hosts}\n{server.output()}")
        time.sleep(0.1)


class Launcher:
    """Starts ``gpuyard <command> --port P --data-dir D <args>``; ``kill_all()`` at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Server] = []

    def __call__(
        self,
        *args: str,
        data_dir: Path | None = None,
        env: dict[str, str] | None = None,
        command: str = "up",
        port: int | None = None,
        inherit: str = "default",
    ) -> Server:
        data_dir = data_dir or self.tmp_path / "data"
        port = port or free_port()
        logs = self.tmp_path / f"run-{len(self.started)}"
        logs.mkdir()
        full_env = {**base_env(self.tmp_path), **(env or {})}
        argv = [*gpuyard_command(), command, "--port", str(port), "--data-dir", str(data_dir)]
        # Through sh, as a script would start it: `trap '' INT` leaves SIGINT ignored for what
        # it execs, exactly as `gpuyard up &` in a script does.
        wrapped = ["sh", "-c", INHERITED[inherit] + 'exec "$@"', "sh", *argv, *args]
        with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
            popen = subprocess.Popen(
                wrapped,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=full_env,
                start_new_session=True,
                preexec_fn=as_from_a_terminal,
            )
        server = Server(popen=popen, port=port, data_dir=data_dir, logs=logs)
        self.started.append(server)
        return server

    def kill_all(self) -> None:
        for server in self.started:
            server.kill()


def ignored_signals(pid: int) -> set[signal.Signals]:
    """The signals a running process ignores (from /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {s for s in signal.Signals if mask & (1 << (s.value - 1))}
    return set()


def group_runs(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs, read from ``/proc``.

    A zombie does not count: ``killpg(pgid, 0)`` finds those too, and where the machine's init
    does not reap orphans (some containers) one stays for good although nothing runs.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


# --- --workers N --------------------------------------------------------------------------------


def worker_pids(parent: int) -> set[int]:
    """The API worker processes ``parent`` started (``python -m gpuyard.cli.api_worker``)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == parent and b"gpuyard.cli.api_worker" in cmdline:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_for_workers(
    server: Server, count: int, *, but: AbstractSet[int] = frozenset()
) -> set[int]:
    """Poll until ``server`` has ``count`` live API workers, none of them in ``but``."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        pids = {pid for pid in worker_pids(server.popen.pid) if alive(pid)}
        if len(pids) == count and not pids & but:
            return pids
        if time.monotonic() > deadline:
            raise AssertionError(f"workers {pids}, wanted {count} not in {but}\n{server.output()}")
        time.sleep(0.05)


def answering_pids(server: Server, wanted: set[int]) -> set[int]:
    """Poll ``/metrics`` on a new connection each time until every process in ``wanted`` has
    answered (the kernel gives each connection to whichever worker accepts it); those seen."""
    seen: set[int] = set()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not wanted <= seen:
        text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
        seen |= {int(pid) for pid in re.findall(r'gpuyard_process_info\{pid="(\d+)"\}', text)}
        if time.monotonic() > deadline:
            raise AssertionError(f"answered: {seen}, wanted {wanted}\n{server.output()}")
    return seen


def spread(server: Server, connections: int) -> dict[int, int]:
    """How many of ``connections`` kept-alive connections, all opened first, each worker took:
    each asks ``/metrics`` which process it is."""
    opened = [
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(connections)
    ]
    counts: dict[int, int] = {}
    try:
        for conn in opened:
            conn.connect()
        for conn in opened:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
            (pid,) = re.findall(r'gpuyard_process_info\{pid="(\d+)"\}', text)
            counts[int(pid)] = counts.get(int(pid), 0) + 1
    finally:
        for conn in opened:
            conn.close()
    return counts
