"""The ``process`` runtime: each workload is a real subprocess on the host, in a sandbox.

Each workload runs under ``process_wrapper.py`` as the leader of its own session
(``start_new_session``), so it survives the agent that started it and can be stopped as a group.
Where bubblewrap works, the wrapper and the command run inside a sandbox (``sandbox.py``); a
root agent runs each workload under a uid of its own. What a new agent needs to re-adopt a
workload is on disk (see ``process_state``). How a spec becomes a command line and an
environment is in ``process_command`` and ``docs/agent-runtimes.md``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpuyard.agent.ports import NoFreePort, PortAllocator
from gpuyard.agent.runtimes.base import DEFAULT_GRACE_S, LOG_TAIL_LINES, unknown_workload
from gpuyard.agent.runtimes.process_command import (
    DEFAULT_INHERITED_ENV,
    CannotRun,
    build_argv,
    build_env,
)
from gpuyard.agent.runtimes.process_launch import prepare_dirs, write_authorized_keys, write_launch
from gpuyard.agent.runtimes.process_state import (
    ProcessRecord,
    WorkloadDir,
    group_runs,
    is_alive,
    process_create_time,
    tail_file,
    tail_with_size,
    workload_ids,
)
from gpuyard.agent.runtimes.sandbox import Sandbox, SandboxConfig, open_sandbox
from gpuyard.agent.runtimes.sandbox_users import NoFreeUid
from gpuyard.agent.runtimes.server_relay import (
    SOCKET_NAME,
    ServerRelays,
    inside_port,
    relay_variable,
)
from gpuyard.core.clock import Clock, SystemClock
from gpuyard.core.hosts import PortRange
from gpuyard.core.workload import WorkloadSpec, WorkloadState, WorkloadStatus

log = logging.getLogger(__name__)

_WRAPPER = str(Path(__file__).with_name("process_wrapper.py"))
_WRAPPER_GUARDED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
_WRAPPER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
"""All the wrapper (and bubblewrap) get: the command's own environment is in its launch file."""
_POLL_S = 0.02
_KILL_WAIT_S = 5.0
_SIGKILL_CODE = 128 + signal.SIGKILL
_PORT_TRIES = 5


class ProcessRuntime:
    name = "process"

    def __init__(
        self,
        state_dir: Path,
        port_range: PortRange,
        *,
        clock: Clock | None = None,
        python: str = sys.executable,
        listen_host: str = "127.0.0.1",
        inherit_env: Sequence[str] = DEFAULT_INHERITED_ENV,
        sandbox: SandboxConfig | None = None,
        server_url: str | None = None,
    ) -> None:
        """``sandbox`` says whether and how to sandbox (default: wherever bubblewrap works);
        raises ``Unavailable`` when it is required and cannot run. ``server_url`` is the server
        the agent reports to: a sandboxed workload that asks for it gets a relay to it."""
        self.state_dir = state_dir
        self._ports = PortAllocator(port_range)
        self._clock: Clock = clock or SystemClock()
        self._python = python
        self._listen_host = listen_host
        self._inherit_env = tuple(inherit_env)
        self._sandbox: Sandbox | None
        self._sandbox, self.isolation = open_sandbox(sandbox or SandboxConfig())
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._server_relays = ServerRelays(server_url) if server_url is not None else None
        self._lock = asyncio.Lock()

    @property
    def sandbox(self) -> Sandbox | None:
        return self._sandbox

    async def start(self, spec: WorkloadSpec) -> WorkloadStatus:
        async with self._lock:
            wdir = WorkloadDir(self.state_dir, spec.id)
            current = wdir.load()
            if current is not None and self._alive(current):
                return self._status(wdir, current)
            wdir.exit_path.unlink(missing_ok=True)
            wdir.stop_path.unlink(missing_ok=True)
            record = ProcessRecord(
                workload_id=spec.id,
                spec_hash=spec.spec_hash(),
                argv=[],
                uid=current.uid if current is not None else None,
            )
            listener: socket.socket | None = None
            try:
                record.argv = build_argv(spec, python=self._python)
                if self._sandbox is None or not self._sandbox.separate_users:
                    record.uid = None  # runs as the agent's own user
                elif record.uid is None:
                    record.uid = self._sandbox.uids.allocate(self._uids_in_use())
                if spec.port is not None:
                    record.host_port, listener = self._take_port()
            except (CannotRun, NoFreePort, NoFreeUid) as exc:
                return self._fail(wdir, record, str(exc))
            try:
                launch = self._prepare(wdir, record, spec, listener)
                record.started_at = self._clock.now()
                # Spawning and recording happen together in the thread: a cancelled start() (the
                # agent shutting down) still leaves a record, so no process is ever orphaned.
                await asyncio.to_thread(self._spawn, wdir, record, spec, launch, listener)
                await self._keep_server_relay(wdir, record)
            except OSError as exc:
                return self._fail(wdir, record, f"cannot start the process: {exc}")
            finally:
                if listener is not None:
                    listener.close()  # the sandbox holds its own copy
            return self._status(wdir, record)

    async def inspect(self, workload_id: str) -> WorkloadStatus | None:
        wdir = WorkloadDir(self.state_dir, workload_id)
        record = wdir.load()
        if record is None:
            return None
        status = self._status(wdir, record)
        if status.state == WorkloadState.RUNNING:
            await self._keep_server_relay(wdir, record)  # an agent that restarted listens again
        return status

    async def list(self) -> builtins.list[WorkloadStatus]:
        found = [await self.inspect(workload_id) for workload_id in workload_ids(self.state_dir)]
        return [status for status in found if status is not None]

    async def stop(self, workload_id: str, grace_s: float = DEFAULT_GRACE_S) -> WorkloadStatus:
        wdir = WorkloadDir(self.state_dir, workload_id)
        record = wdir.load()
        if record is None:
            raise unknown_workload(workload_id)
        if not self._alive(record) or record.pid is None:
            return self._status(wdir, record)
        record.stop_requested = True
        wdir.save(record)
        with contextlib.suppress(OSError):
            wdir.stop_path.touch(mode=0o600)  # for a wrapper not yet there to be signalled
        pgid = record.pid
        _signal_group(pgid, signal.SIGTERM)
        if not await self._wait_gone(record, grace_s):
            record.killed = True
            wdir.save(record)
            _signal_group(pgid, signal.SIGKILL)
            await self._wait_gone(record, _KILL_WAIT_S)
        # The leader is gone; end whatever it left behind in its group (a sandbox's inner
        # process, say) and see it end, so a stopped workload holds nothing when stop returns.
        _signal_group(pgid, signal.SIGKILL)
        await self._wait_group_gone(pgid, _KILL_WAIT_S)
        if self._server_relays is not None:
            self._server_relays.close(workload_id)
        return self._status(wdir, record)

    async def remove(self, workload_id: str) -> None:
        wdir = WorkloadDir(self.state_dir, workload_id)
        record = wdir.load()
        if record is not None and self._alive(record):
            await self.stop(workload_id, grace_s=0)
        if self._server_relays is not None:
            self._server_relays.close(workload_id)
        await asyncio.to_thread(_remove_tree, wdir.path)

    async def logs(self, workload_id: str, tail_lines: int = 100) -> str:
        wdir = WorkloadDir(self.state_dir, workload_id)
        if not wdir.record_path.exists():
            raise unknown_workload(workload_id)
        return await asyncio.to_thread(tail_file, wdir.log_path, tail_lines)

    def close_server_relays(self) -> None:
        """Stop relaying sandboxes to the server, as an ending agent process does; a new
        runtime listens again for the workloads it finds running."""
        if self._server_relays is not None:
            self._server_relays.close_all()

    def _take_port(self) -> tuple[int, socket.socket | None]:
        """A free host port, and in a sandbox the socket bound to it there (not listening yet:
        the relay listens once the workload does); a port taken meanwhile is skipped."""
        taken = self._ports_in_use()
        for _ in range(_PORT_TRIES):
            port = self._ports.allocate(taken=taken)
            if self._sandbox is None:
                return port, None
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((self._listen_host, port))
            except OSError:
                sock.close()
                taken.add(port)
                continue
            return port, sock
        raise NoFreePort(f"no free port in {self._ports.port_range}")

    def _prepare(
        self,
        wdir: WorkloadDir,
        record: ProcessRecord,
        spec: WorkloadSpec,
        listener: socket.socket | None,
    ) -> dict[str, Any]:
        """Directories, SSH keys and the launch file's content."""
        prepare_dirs(wdir, record.uid)
        write_authorized_keys(wdir, spec.ssh_authorized_keys, record.uid)
        devices = None
        if self._sandbox is not None and self._sandbox.assigned_gpus(spec.gpu_uuids):
            devices = ",".join(spec.gpu_uuids)  # only these GPUs exist in there, in their order
        env = build_env(
            spec,
            host_port=record.host_port,
            home=str(wdir.home),
            listen_host="127.0.0.1" if self._sandbox is not None else self._listen_host,
            inherit=self._inherit_env,
            visible_devices=devices,
        )
        relay = None
        if listener is not None and record.host_port is not None:
            relay = {"fd": listener.fileno(), "port": record.host_port}
        server_relay = None
        variable = relay_variable(spec)
        record.server_relay = False
        if self._sandbox is not None and self._server_relays is not None and variable:
            port = inside_port(record.host_port)
            env[variable] = f"http://127.0.0.1:{port}"
            server_relay = {"port": port, "run_dir": str(wdir.run), "name": SOCKET_NAME}
            record.server_relay = True
        return {
            "argv": record.argv,
            "env": env,
            "cwd": str(wdir.home),
            "user": record.uid,
            "relay": relay,
            "server_relay": server_relay,
        }

    async def _keep_server_relay(self, wdir: WorkloadDir, record: ProcessRecord) -> None:
        """Listen for the workload's relay to the server; a failure is logged, not the
        workload's (it runs, and its reports fail until a later look succeeds)."""
        if record.server_relay and self._server_relays is not None:
            try:
                await self._server_relays.ensure(record.workload_id, wdir.run)
            except OSError as exc:
                log.warning("cannot relay %s to the server: %s", record.workload_id, exc)

    def _spawn(
        self,
        wdir: WorkloadDir,
        record: ProcessRecord,
        spec: WorkloadSpec,
        launch: dict[str, Any],
        listener: socket.socket | None,
    ) -> None:
        write_launch(wdir, launch)
        argv = [self._python, "-I", _WRAPPER, str(wdir.exit_path)]
        if self._sandbox is not None:
            argv = self._sandbox.argv(
                argv,
                writable=[str(wdir.home), str(wdir.run)],
                cwd=str(wdir.home),
                gpu_uuids=spec.gpu_uuids,
                private=[str(self.state_dir.absolute())],
            )
        # The wrapper inherits this thread's signal mask: a stop sent before it is ready is held.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _WRAPPER_GUARDED)
        try:
            with wdir.log_path.open("ab") as log:
                os.fchmod(log.fileno(), 0o600)
                child = subprocess.Popen(
                    argv,
                    cwd=wdir.path,
                    env=_WRAPPER_ENV,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                    pass_fds=(listener.fileno(),) if listener is not None else (),
                )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self._children[child.pid] = child
        record.pid = child.pid
        record.create_time = process_create_time(child.pid)
        wdir.save(record)

    def _alive(self, record: ProcessRecord) -> bool:
        if record.pid is not None and record.pid in self._children:
            self._children[record.pid].poll()  # reap our own child so it stops being a zombie
        return is_alive(record.pid, record.create_time)

    async def _wait_gone(self, record: ProcessRecord, timeout_s: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._alive(record):
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(_POLL_S)
        return True

    async def _wait_group_gone(self, pgid: int, timeout_s: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while await asyncio.to_thread(group_runs, pgid):
            if asyncio.get_running_loop().time() >= deadline:
                return
            await asyncio.sleep(_POLL_S)

    def _uids_in_use(self) -> set[int]:
        """Every uid a workload holds: it keeps one until it is removed, running or not."""
        records = (WorkloadDir(self.state_dir, wid).load() for wid in workload_ids(self.state_dir))
        return {r.uid for r in records if r is not None and r.uid is not None}

    def _ports_in_use(self) -> set[int]:
        taken = set()
        for workload_id in workload_ids(self.state_dir):
            record = WorkloadDir(self.state_dir, workload_id).load()
            if record is not None and record.host_port is not None and self._alive(record):
                taken.add(record.host_port)
        return taken

    def _fail(self, wdir: WorkloadDir, record: ProcessRecord, message: str) -> WorkloadStatus:
        record.failed = message
        record.finished_at = self._clock.now()
        wdir.save(record)
        return self._status(wdir, record)

    def _status(self, wdir: WorkloadDir, record: ProcessRecord) -> WorkloadStatus:
        if record.failed is not None:
            state, message = WorkloadState.FAILED, record.failed
        elif self._alive(record):
            state, message = WorkloadState.RUNNING, None
        else:
            if record.finished_at is None:
                self._settle(wdir, record)
            state = WorkloadState.STOPPED if record.stop_requested else WorkloadState.EXITED
            message = _end_message(record)
        tail, size = tail_with_size(wdir.log_path, LOG_TAIL_LINES)
        return WorkloadStatus(
            id=record.workload_id,
            state=state,
            exit_code=record.exit_code,
            host_port=record.host_port,
            pid=record.pid,
            started_at=record.started_at,
            finished_at=record.finished_at,
            message=message,
            log_tail=tail,
            log_size=size,
            spec_hash=record.spec_hash,
        )

    def _settle(self, wdir: WorkloadDir, record: ProcessRecord) -> None:
        """Record, once, how a process that is no longer alive ended."""
        ended = wdir.read_exit()
        if ended is not None:
            record.exit_code, record.finished_at = ended.exit_code, ended.finished_at
        else:
            child = self._children.get(record.pid) if record.pid is not None else None
            if child is not None and child.returncode is not None:
                rc = child.returncode
                record.exit_code = 128 - rc if rc < 0 else rc
            elif record.killed:
                record.exit_code = _SIGKILL_CODE
            record.finished_at = self._clock.now()
        if record.pid is not None:
            self._children.pop(record.pid, None)
        wdir.save(record)


def _end_message(record: ProcessRecord) -> str:
    if record.killed:
        return "killed after the stop grace period"
    if record.exit_code is None:
        return "ended without an exit code (killed outside gpuyard, or the host restarted)"
    how = "stopped" if record.stop_requested else "exited"
    return f"{how} with code {record.exit_code}"


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
