"""Stopping ``gpuyard up``: the same clean stop whatever signal handling it inherits, and Ctrl-C
stops the workloads its local agent started; the next ``gpuyard up`` starts them again.

Real subprocesses throughout: ``gpuyard up`` started through ``sh`` as a script would start it
(``trap '' INT`` is what ``gpuyard up &`` in a script does), a rented instance that runs a real
``python3 -m http.server`` on the port its host gave it, checked with real connections.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import httpx
import pytest

from tests.cli.up_kit import (
    INHERITED,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Launcher,
    Server,
    as_from_a_terminal,
    assert_no_traceback,
    group_runs,
    ignored_signals,
    listening,
)

pytestmark = pytest.mark.slow


def test_the_launcher_really_starts_commands_with_sigint_ignored() -> None:
    """What the tests below rely on: the wrapper leaves SIGINT (and SIGTERM) ignored for the
    command it execs, as a shell does for a background job."""
    for inherit, expected in [
        ("default", set()),
        ("sigint-ignored", {signal.SIGINT}),
        ("both-ignored", {signal.SIGINT, signal.SIGTERM}),
    ]:
        child = subprocess.Popen(
            ["sh", "-c", INHERITED[inherit] + 'exec "$@"', "sh", "sleep", "30"],
            start_new_session=True,
            preexec_fn=as_from_a_terminal,
        )
        try:
            deadline = time.monotonic() + 10
            # Until the exec, the shell's own command line names sleep too: wait for its name.
            while open(f"/proc/{child.pid}/comm").read().strip() != "sleep":  # noqa: SIM115
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert ignored_signals(child.pid) & {signal.SIGINT, signal.SIGTERM} == expected
        finally:
            child.kill()
            child.wait()


@pytest.mark.parametrize("inherit", ["default", "sigint-ignored"])
def test_ctrl_c_stops_cleanly(gpuyard: Launcher, inherit: str) -> None:
    server = gpuyard(inherit=inherit)
    server.wait_ready()
    assert signal.SIGINT not in ignored_signals(server.popen.pid)  # put back at start
    started = time.monotonic()

    code = server.interrupt()

    assert code == 0, server.output()
    assert time.monotonic() - started < STOP_TIMEOUT_S
    assert "Application shutdown complete" in server.stderr, server.output()
    assert server.stderr.rstrip().endswith("stopped"), server.output()
    assert_no_traceback(server)
    assert not listening(server.port)


@pytest.mark.parametrize("inherit", ["default", "both-ignored"])
def test_sigterm_stops_cleanly(gpuyard: Launcher, inherit: str) -> None:
    """SIGTERM (systemd, docker stop) runs the same stop as Ctrl-C, and the process exits 0."""
    server = gpuyard(inherit=inherit)
    server.wait_ready()

    server.popen.send_signal(signal.SIGTERM)
    code = server.wait_exit()

    assert code == 0, server.output()
    assert "Application shutdown complete" in server.stderr, server.output()
    assert server.stderr.rstrip().endswith("stopped"), server.output()
    assert_no_traceback(server)
    assert not listening(server.port)


def test_ctrl_c_while_starting_stops_too(gpuyard: Launcher) -> None:
    """Ctrl-C before the API serves (a backgrounded start included) still ends the process."""
    server = gpuyard(inherit="sigint-ignored")
    deadline = time.monotonic() + START_TIMEOUT_S
    while "Operator" not in server.stderr:  # the key is made: start-up is under way
        assert server.popen.poll() is None, server.output()
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.01)
    code = server.interrupt()
    assert code == 0, server.output()
    assert server.stderr.rstrip().endswith("stopped"), server.output()
    assert not listening(server.port)


# --- the local agent's workloads ------------------------------------------------------------------


def _operator(server: Server) -> tuple[httpx.Client, str]:
    key = (server.data_dir / "admin-key").read_text().strip()
    client = httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    return client, client.get("/v1/me").json()["org_id"]


def _wait_serving(server: Server, client: httpx.Client, path: str) -> int:
    """Poll the instance until it runs and its port answers HTTP; its host port."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        vm = client.get(path).json()
        port = vm.get("port")
        if vm.get("actual_status") == "running" and port:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    return int(port)
            except httpx.TransportError:
                pass
        if time.monotonic() > deadline:
            raise AssertionError(f"instance not serving: {vm}\n{server.output()}")
        time.sleep(0.1)


def test_ctrl_c_stops_its_workloads_and_the_next_up_starts_them_again(
    gpuyard: Launcher,
) -> None:
    first = gpuyard("--gpus", "RTX 4090:1")
    first.wait_ready()
    client, org = _operator(first)
    offers = client.get(f"/v1/orgs/{org}/offers").json()["data"]
    assert offers, first.output()
    r = client.post(
        f"/v1/orgs/{org}/vms",
        json={"offer_id": offers[0]["id"], "command": "exec python3 -m http.server $PORT"},
    )
    assert r.status_code == 201, r.text
    vm_path = f"/v1/orgs/{org}/vms/{r.json()['id']}"
    port = _wait_serving(first, client, vm_path)
    workload_dir = first.data_dir / "agent" / "workloads"
    (record,) = workload_dir.glob("*/record.json")
    pgid = int(json.loads(record.read_text())["pid"])  # the workload leads its own group
    assert group_runs(pgid)

    assert first.interrupt() == 0, first.output()

    assert not group_runs(pgid), first.output()  # the command and all it started are gone
    assert not listening(port)  # and its port is free for the next start
    assert "stopping 1 workload(s)" in first.stderr, first.output()
    assert_no_traceback(first)

    second = gpuyard("--gpus", "RTX 4090:1", data_dir=first.data_dir)
    second.wait_ready()
    client, _ = _operator(second)
    again = _wait_serving(second, client, vm_path)
    assert listening(again)
    assert second.interrupt() == 0, second.output()
    assert not listening(again)
    assert_no_traceback(second)
