"""The process runtime against real subprocesses."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from pathlib import Path

import psutil
import pytest

from gpuyard.agent.health import check_http
from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.agent.runtimes.process_state import WorkloadDir
from gpuyard.core.errors import NotFound
from gpuyard.core.hosts import PortRange
from gpuyard.core.workload import WorkloadSpec, WorkloadState
from tests.agent.supervisor_kit import live_wrappers

from .polling import ended, wait_for

PY = shlex.quote(sys.executable)
HTTP_SERVER = f'exec {PY} -m http.server "$PORT" --bind 127.0.0.1'
IGNORES_TERM = (
    f'exec {PY} -c "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); '
    "print('ready', flush=True); time.sleep(60)\""
)


def wrappers_for(state_dir: Path, workload_id: str) -> list[psutil.Process]:
    return live_wrappers(state_dir, workload_id)


async def test_serves_on_the_allocated_port(runtime: ProcessRuntime, port_range: PortRange) -> None:
    status = await runtime.start(WorkloadSpec(id="wl_http", command=HTTP_SERVER, port=8000))
    assert status.state is WorkloadState.RUNNING
    assert status.host_port in port_range and status.pid is not None
    assert status.started_at is not None
    assert status.log_tail is not None and status.log_size == len(status.log_tail.encode())

    async def healthy() -> bool:
        return await check_http("127.0.0.1", status.host_port or 0, "/", timeout_s=1.0)

    deadline = asyncio.get_running_loop().time() + 10
    while not await healthy():
        assert asyncio.get_running_loop().time() < deadline, await runtime.logs("wl_http")
        await asyncio.sleep(0.02)
    other = await runtime.start(WorkloadSpec(id="wl_http2", command=HTTP_SERVER, port=8000))
    assert other.host_port not in (None, status.host_port)


async def test_env_reaches_the_process(runtime: ProcessRuntime, state_dir: Path) -> None:
    spec = WorkloadSpec(
        id="wl_env",
        command=f'{PY} -c "import json, os; print(json.dumps(dict(os.environ)))"',
        port=9000,
        env={"FOO": "bar"},
        gpu_indices=[0, 1],
        ssh_authorized_keys=["ssh-ed25519 AAAA me@laptop"],
    )
    started = await runtime.start(spec)
    status = await wait_for(lambda: runtime.inspect("wl_env"), ended)
    assert status.state is WorkloadState.EXITED and status.exit_code == 0
    env = json.loads(await runtime.logs("wl_env"))
    assert env["PORT"] == str(started.host_port)
    assert env["HOST"] == "127.0.0.1"  # the runtime's default: reached on loopback only
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "0,1"
    assert env["GPUYARD_WORKLOAD_ID"] == "wl_env"
    assert env["FOO"] == "bar"
    assert env["SSH_PUBLIC_KEY"] == "ssh-ed25519 AAAA me@laptop"
    home = WorkloadDir(state_dir, "wl_env").home
    assert env["HOME"] == str(home)
    keys = home / ".ssh" / "authorized_keys"
    assert keys.read_text() == "ssh-ed25519 AAAA me@laptop\n"
    assert keys.stat().st_mode & 0o777 == 0o600


async def test_command_that_exits_at_once(runtime: ProcessRuntime) -> None:
    await runtime.start(WorkloadSpec(id="wl_exit", command="echo boom; echo oops >&2; exit 3"))
    status = await wait_for(lambda: runtime.inspect("wl_exit"), ended)
    assert status.state is WorkloadState.EXITED
    assert status.exit_code == 3
    assert status.log_tail is not None and "boom" in status.log_tail and "oops" in status.log_tail
    assert status.finished_at is not None and status.message == "exited with code 3"
    again = await runtime.inspect("wl_exit")  # the runtime itself never restarts it
    assert again is not None and again.state is WorkloadState.EXITED and again.pid == status.pid


async def test_missing_program_exits_127(runtime: ProcessRuntime) -> None:
    await runtime.start(WorkloadSpec(id="wl_missing", args=["/nonexistent/program"]))
    status = await wait_for(lambda: runtime.inspect("wl_missing"), ended)
    assert status.exit_code == 127
    assert "cannot run '/nonexistent/program'" in (status.log_tail or "")


async def test_image_it_cannot_run_fails_clearly(runtime: ProcessRuntime) -> None:
    status = await runtime.start(WorkloadSpec(id="wl_img", image="nginx:1"))
    assert status.state is WorkloadState.FAILED
    assert status.message == "image nginx:1 cannot run on the process runtime; give a command"
    assert await runtime.inspect("wl_img") == status
    assert [s.id for s in await runtime.list()] == ["wl_img"]


async def test_stop_sends_sigterm(runtime: ProcessRuntime) -> None:
    await runtime.start(WorkloadSpec(id="wl_term", command="exec sleep 60"))
    status = await runtime.stop("wl_term", grace_s=10)
    assert status.state is WorkloadState.STOPPED
    assert status.exit_code == 128 + 15
    assert not psutil.pid_exists(status.pid or 0) or _is_zombie(status.pid or 0)


async def test_stop_kills_after_grace(runtime: ProcessRuntime) -> None:
    await runtime.start(WorkloadSpec(id="wl_stubborn", command=IGNORES_TERM))
    await wait_for(lambda: runtime.inspect("wl_stubborn"), lambda _: True)
    deadline = asyncio.get_running_loop().time() + 10
    while "ready" not in await runtime.logs("wl_stubborn"):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    loop = asyncio.get_running_loop()
    began = loop.time()
    status = await runtime.stop("wl_stubborn", grace_s=0.3)
    assert loop.time() - began >= 0.3
    assert status.state is WorkloadState.STOPPED
    assert status.exit_code == 128 + 9
    assert status.message == "killed after the stop grace period"


async def test_restarted_agent_readopts_and_never_duplicates(
    state_dir: Path, port_range: PortRange, runtime: ProcessRuntime
) -> None:
    spec = WorkloadSpec(id="wl_keep", command=HTTP_SERVER, port=8000)
    first = await runtime.start(spec)
    del runtime  # the agent goes away; its process does not

    agent2 = ProcessRuntime(state_dir, port_range)
    listed = await agent2.list()
    assert [(s.id, s.state, s.pid, s.host_port) for s in listed] == [
        ("wl_keep", WorkloadState.RUNNING, first.pid, first.host_port)
    ]
    again = await agent2.start(spec)
    assert again.pid == first.pid and again.state is WorkloadState.RUNNING
    assert len(wrappers_for(state_dir, "wl_keep")) == 1

    stopped = await agent2.stop("wl_keep", grace_s=5)
    assert stopped.state is WorkloadState.STOPPED and stopped.exit_code == 128 + 15


async def test_readopted_process_reports_its_own_exit_code(
    state_dir: Path, port_range: PortRange, runtime: ProcessRuntime
) -> None:
    await runtime.start(
        WorkloadSpec(id="wl_later", command="while [ ! -f go ]; do sleep 0.02; done; exit 5")
    )
    agent2 = ProcessRuntime(state_dir, port_range)
    assert (await agent2.inspect("wl_later")).state is WorkloadState.RUNNING  # type: ignore[union-attr]
    (WorkloadDir(state_dir, "wl_later").home / "go").touch()
    status = await wait_for(lambda: agent2.inspect("wl_later"), ended)
    assert status.state is WorkloadState.EXITED and status.exit_code == 5


async def test_a_reused_pid_is_not_taken_for_the_workload(
    state_dir: Path, port_range: PortRange, runtime: ProcessRuntime
) -> None:
    await runtime.start(WorkloadSpec(id="wl_gone", command="exit 0"))
    await wait_for(lambda: runtime.inspect("wl_gone"), ended)
    wdir = WorkloadDir(state_dir, "wl_gone")
    record = wdir.load()
    assert record is not None
    # Pretend the agent died before it saw the end, and the pid now belongs to someone else.
    wdir.save(
        record.model_copy(
            update={
                "pid": psutil.Process().pid,
                "create_time": 1.0,
                "finished_at": None,
                "exit_code": None,
            }
        )
    )
    wdir.exit_path.unlink()
    status = await ProcessRuntime(state_dir, port_range).inspect("wl_gone")
    assert status is not None and status.state is WorkloadState.EXITED
    assert status.exit_code is None and "without an exit code" in (status.message or "")


async def test_start_after_exit_runs_it_again(runtime: ProcessRuntime) -> None:
    spec = WorkloadSpec(id="wl_twice", command="echo run; exit 1")
    first = await runtime.start(spec)
    await wait_for(lambda: runtime.inspect("wl_twice"), ended)
    second = await runtime.start(spec)
    assert second.pid != first.pid
    status = await wait_for(lambda: runtime.inspect("wl_twice"), ended)
    assert status.exit_code == 1 and (status.log_tail or "").count("run") == 2


async def test_remove_kills_and_forgets(runtime: ProcessRuntime, state_dir: Path) -> None:
    started = await runtime.start(WorkloadSpec(id="wl_rm", command="exec sleep 60"))
    await runtime.remove("wl_rm")
    assert await runtime.inspect("wl_rm") is None
    assert not WorkloadDir(state_dir, "wl_rm").path.exists()
    assert not psutil.pid_exists(started.pid or 0) or _is_zombie(started.pid or 0)
    await runtime.remove("wl_rm")  # idempotent
    with pytest.raises(NotFound):
        await runtime.stop("wl_rm")
    with pytest.raises(NotFound):
        await runtime.logs("wl_rm")


def _is_zombie(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("attempt", range(3))
async def test_stop_right_after_start_is_not_lost(
    runtime: ProcessRuntime, state_dir: Path, port_range: PortRange, attempt: int
) -> None:
    spec = WorkloadSpec(id=f"wl_quick{attempt}", command="exec sleep 60")
    await runtime.start(spec)
    # A second agent (which is not the parent) stops it before the wrapper is even ready.
    status = await ProcessRuntime(state_dir, port_range).stop(spec.id, grace_s=5)
    assert status.state is WorkloadState.STOPPED
    assert status.exit_code == 128 + 15
    assert status.message != "killed after the stop grace period"


async def test_a_running_workload_reports_its_output_so_far(runtime: ProcessRuntime) -> None:
    command = "echo ready; exec sleep 30"
    status = await runtime.start(WorkloadSpec(id="wl_talks", command=command))
    deadline = asyncio.get_running_loop().time() + 10
    while "ready" not in (status.log_tail or ""):
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.02)
        status = await runtime.inspect("wl_talks")  # type: ignore[assignment]
    assert status.state is WorkloadState.RUNNING
    assert status.log_tail == "ready\n" and status.log_size == 6
    await runtime.stop("wl_talks", grace_s=1)
