"""What a workload in the real sandbox can see and do: each probe runs inside one."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import httpx
import pytest

from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.agent.runtimes.process_state import WorkloadDir
from gpuyard.core.workload import WorkloadSpec, WorkloadState

from .polling import ended, wait_for
from .sandboxing import last_json, python_command, require_isolation, run_to_end, wait_listening

LOOKS_AROUND = """
import json, os, socket, sys
state, host_file, host_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}
seen["hostname"] = socket.gethostname()
seen["env"] = sorted(os.environ)
seen["workloads"] = sorted(os.listdir(os.path.join(state, "workloads")))
seen["state"] = sorted(os.listdir(state))
seen["host_file"] = os.path.exists(host_file)
seen["processes"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
seen["interfaces"] = sorted(
    line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:]
)
seen["paths"] = {p: os.path.exists(p) for p in ("/home", "/run", "/var", "/srv", "/usr/bin")}
def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return type(exc).__name__
seen["write_usr"] = attempt(lambda: open("/usr/gpuyard-probe", "w"))
seen["write_home"] = attempt(lambda: open(os.path.expanduser("~/probe"), "w").write("x"))
seen["write_tmp"] = attempt(lambda: open("/tmp/probe", "w").write("x"))
seen["signal_init"] = attempt(lambda: os.kill(1, 15))
seen["host_loopback"] = attempt(lambda: socket.create_connection(("127.0.0.1", host_port), 2))
seen["outside"] = attempt(lambda: socket.create_connection(("192.0.2.1", 80), 2))
print(json.dumps(seen))
"""

# http.server's files, and a POST that reads its body and answers the body's sha256. Not bare
# http.server: it answers a POST (a method it lacks) with 501 without reading the body, then
# closes with the body unread, which resets the connection; a client still sending then loses the
# 501 (httpx: ReadError, or through the relay "Server disconnected"), sandbox or not.
SERVES = """
import hashlib, os
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
class Handler(SimpleHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        digest = hashlib.sha256(body).hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(digest)))
        self.end_headers()
        self.wfile.write(digest)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture
def isolating(runtime: ProcessRuntime) -> ProcessRuntime:
    require_isolation(runtime)
    return runtime


async def test_a_workload_sees_its_own_home_and_nothing_of_the_host(
    isolating: ProcessRuntime, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUYARD_AGENT_SECRET", "agent-only")
    host_file = tmp_path / "on-the-host"
    host_file.write_text("the host's")
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    host_port = server.sockets[0].getsockname()[1]
    neighbour = WorkloadSpec(id="wl_neighbour", command="echo x > secret; exec sleep 60")
    await isolating.start(neighbour)
    spec = WorkloadSpec(
        id="wl_look",
        command=python_command(LOOKS_AROUND, str(state_dir), str(host_file), str(host_port)),
        env={"MINE": "1"},
    )
    async with server:
        seen = last_json(await run_to_end(isolating, spec))

    record = WorkloadDir(state_dir, "wl_look").load()
    other = WorkloadDir(state_dir, "wl_neighbour").load()
    assert record is not None and other is not None and record.uid is not None
    uids = isolating.sandbox.uids if isolating.sandbox else None
    assert uids is not None and record.uid in uids and other.uid in uids
    assert record.uid != other.uid
    assert (seen["uid"], seen["gid"], seen["groups"]) == (record.uid, record.uid, [])
    assert seen["hostname"] == "gpuyard"
    assert "GPUYARD_AGENT_SECRET" not in seen["env"] and "MINE" in seen["env"]
    assert seen["workloads"] == ["wl_look"]  # not the neighbour's directory
    assert seen["state"] == ["workloads"]  # no host.json, no agent.lock
    assert seen["host_file"] is False
    assert len(seen["processes"]) <= 4  # bubblewrap's init, the wrapper, the command
    assert seen["interfaces"] == ["lo"]
    assert seen["paths"] == {
        "/home": False,
        "/run": False,
        "/var": False,
        "/srv": False,
        "/usr/bin": True,
    }
    assert seen["write_usr"] in ("OSError", "PermissionError")
    assert seen["write_home"] == seen["write_tmp"] == "ok"
    assert seen["signal_init"] == "PermissionError"
    assert seen["host_loopback"] == "ConnectionRefusedError"  # its own loopback, not the host's
    assert seen["outside"] == "OSError"  # Network is unreachable
    home = WorkloadDir(state_dir, "wl_look").home
    assert (home / "probe").stat().st_uid == record.uid


async def test_the_published_port_is_the_way_in(isolating: ProcessRuntime) -> None:
    spec = WorkloadSpec(
        id="wl_web",
        command=f"while [ ! -f go ]; do sleep 0.02; done; {python_command(SERVES)}",
        port=8000,
    )
    status = await isolating.start(spec)
    port = status.host_port
    assert port is not None
    with pytest.raises(ConnectionRefusedError):  # nothing listens inside yet: refused, as bare
        await asyncio.open_connection("127.0.0.1", port)
    (WorkloadDir(isolating.state_dir, "wl_web").home / "go").touch()
    await wait_listening("127.0.0.1", port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(3):
            r = await client.get("/go")
            assert r.status_code == 200 and r.content == b""
        body = os.urandom(1_000_000)
        big = await client.post("/", content=body)
        assert big.status_code == 200  # the body crossed whole and was read
        assert big.text == hashlib.sha256(body).hexdigest()
    stopped = await isolating.stop("wl_web", grace_s=5)
    assert stopped.state is WorkloadState.STOPPED and stopped.exit_code == 128 + 15


async def test_a_uid_is_the_workloads_until_it_is_removed(isolating: ProcessRuntime) -> None:
    await isolating.start(WorkloadSpec(id="wl_one", command="exec sleep 60"))
    await isolating.start(WorkloadSpec(id="wl_two", command="exit 0"))
    state = isolating.state_dir
    one, two = WorkloadDir(state, "wl_one").load(), WorkloadDir(state, "wl_two").load()
    assert one is not None and two is not None and one.uid != two.uid
    await wait_for(lambda: isolating.inspect("wl_two"), ended)
    again = await isolating.start(WorkloadSpec(id="wl_two", command="exit 0"))  # same uid again
    assert again.pid is not None
    assert (WorkloadDir(state, "wl_two").load() or two).uid == two.uid
    await isolating.remove("wl_one")
    await isolating.start(WorkloadSpec(id="wl_three", command="exec sleep 60"))
    three = WorkloadDir(state, "wl_three").load()
    assert three is not None and three.uid == one.uid  # free again once its owner was removed


async def test_a_planted_symlink_gets_no_root_write(
    isolating: ProcessRuntime, tmp_path: Path
) -> None:
    target = tmp_path / "host-file"
    target.write_text("the host's own\n")
    os.chmod(tmp_path, 0o755)
    plant = f"rm -rf ~/.ssh && ln -s {tmp_path} ~/.ssh && ln -s {target} ~/authorized_keys"
    spec = WorkloadSpec(id="wl_plant", command=plant, ssh_authorized_keys=["ssh-ed25519 AAAA k"])
    await isolating.start(spec)
    await wait_for(lambda: isolating.inspect("wl_plant"), ended)
    status = await isolating.start(spec)  # the agent writes the keys again: not through the link
    assert status.state is WorkloadState.FAILED
    assert "cannot start the process" in (status.message or "")
    assert target.read_text() == "the host's own\n"
    assert not (tmp_path / "authorized_keys").exists()
