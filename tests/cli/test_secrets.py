"""Secrets stay secret, on the real ``gpuyard up``: the operator key is in no process's environment
(the server's, a workload's), it may come from a file, a weak one is refused, a key sent in a URL
is redacted in the access log, and the data dir and the database are private to the user.

The servers are started by the ``gpuyard`` fixture (conftest.py, up_kit.py); every process is
killed at teardown.
"""

from __future__ import annotations

import os
import stat
import time
import uuid
from pathlib import Path

import httpx
import pytest

from gpuyard.core.credentials import new_api_key
from tests.cli.up_kit import (
    START_TIMEOUT_S,
    Launcher,
    Server,
    assert_no_traceback,
    listening,
    me,
    wait_for_hosts,
)

pytestmark = pytest.mark.slow


def environ_of(pid: int | str) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or another user's
        return None


def processes_holding(text: bytes) -> list[int]:
    """The processes this user can see whose environment holds ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            env = environ_of(entry)
            if env is not None and text in env:
                found.append(int(entry))
    return found


def wait_for_process_with(marker: bytes, server: Server) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        pids = processes_holding(marker)
        if pids:
            return pids[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no workload process after {START_TIMEOUT_S}s\n{server.output()}")
        time.sleep(0.1)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_the_operator_key_is_in_no_process_environment(gpuyard: Launcher) -> None:
    chosen = new_api_key()
    server = gpuyard("--gpus", "RTX 4090:1", env={"GPUYARD_ADMIN_KEY": chosen})
    server.wait_ready()
    assert me(server, chosen).status_code == 200  # still the operator key

    start_env = environ_of(server.popen.pid)
    assert start_env is not None
    assert chosen.encode() not in start_env
    assert b"GPUYARD_ADMIN_KEY=" not in start_env

    # A workload of the local agent, found by a marker in its own environment.
    wait_for_hosts(server, chosen, 1)
    org = me(server, chosen).json()["org_id"]
    offers = httpx.get(f"{server.base_url}/v1/orgs/{org}/offers", headers=auth(chosen), timeout=10)
    assert offers.status_code == 200 and offers.json()["data"], offers.text
    marker = f"probe-{uuid.uuid4().hex}"
    vm = httpx.post(
        f"{server.base_url}/v1/orgs/{org}/vms",
        headers=auth(chosen),
        json={
            "offer_id": offers.json()["data"][0]["id"],
            "command": "sleep 300",
            "env": {"SECRET_PROBE": marker},
        },
        timeout=10,
    )
    assert vm.status_code == 201, vm.text
    workload = wait_for_process_with(f"SECRET_PROBE={marker}".encode(), server)
    workload_env = environ_of(workload)
    assert workload_env is not None and b"GPUYARD_ADMIN_KEY" not in workload_env

    assert processes_holding(chosen.encode()) == []  # no process of this user shows the key
    assert_no_traceback(server)


def test_the_operator_key_can_come_from_a_file(gpuyard: Launcher, tmp_path: Path) -> None:
    chosen = new_api_key()
    key_file = tmp_path / "operator.key"
    key_file.write_text(chosen + "\n")
    key_file.chmod(0o600)
    server = gpuyard(command="server", env={"GPUYARD_ADMIN_KEY_FILE": str(key_file)})
    server.wait_ready()

    r = me(server, chosen)
    assert r.status_code == 200 and r.json()["scopes"] == ["operator"], r.text
    assert chosen not in server.stdout + server.stderr
    assert str(key_file) in server.stderr
    assert not (server.data_dir / "admin-key").exists()  # nothing generated


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"GPUYARD_ADMIN_KEY": "vl_" + "A" * 43}, "GPUYARD_ADMIN_KEY is too weak"),
        ({"GPUYARD_ADMIN_KEY": "vl_" + "Pa55word" * 6}, "GPUYARD_ADMIN_KEY is too weak"),
        ({"GPUYARD_ADMIN_KEY_FILE": "/nonexistent/operator.key"}, "cannot read"),
        (
            {"GPUYARD_ADMIN_KEY": new_api_key(), "GPUYARD_ADMIN_KEY_FILE": "/etc/hostname"},
            "not both",
        ),
    ],
    ids=["repeated", "pattern", "missing-file", "both"],
)
def test_a_weak_or_ambiguous_operator_key_stops_before_serving(
    gpuyard: Launcher,
    env: dict[str, str],
    says: str,
) -> None:
    server = gpuyard(command="server", env=env)
    code = server.wait_exit(timeout_s=START_TIMEOUT_S)
    assert code != 0, server.output()
    assert says in server.stderr, server.output()
    for value in env.values():
        if value.startswith("vl_"):
            assert value not in server.stdout + server.stderr  # never echoed
    assert_no_traceback(server)
    assert not listening(server.port)


def test_a_weak_key_in_a_file_is_refused(gpuyard: Launcher, tmp_path: Path) -> None:
    key_file = tmp_path / "operator.key"
    key_file.write_text("vl_" + "abc" * 20 + "\n")
    server = gpuyard(command="server", env={"GPUYARD_ADMIN_KEY_FILE": str(key_file)})
    assert server.wait_exit(timeout_s=START_TIMEOUT_S) != 0
    assert "the key in GPUYARD_ADMIN_KEY_FILE is too weak" in server.stderr, server.output()


def test_a_key_in_the_url_is_redacted_in_the_access_log(gpuyard: Launcher) -> None:
    server = gpuyard(command="server")
    server.wait_ready()
    (key,) = server.printed_keys()

    for query in (f"api_key={key}", f"owner=me&api_key={key}&x=1"):
        r = httpx.get(f"{server.base_url}/api/v0/users/current/?{query}", timeout=10)
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while server.stdout.count("/api/v0/users/current/") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # uvicorn writes the access log line after the response

    log = server.stdout.replace(f"{key}\n", "", 1) + server.stderr  # less the key printed once
    assert key not in log
    assert "/api/v0/users/current/?api_key=[redacted] HTTP/1.1" in log, server.output()
    assert "/api/v0/users/current/?owner=me&api_key=[redacted]&x=1 HTTP/1.1" in log, log


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_dir_and_database_are_private(gpuyard: Launcher, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)  # as an older gpuyard, or a hand-made directory, left it
    first = gpuyard(data_dir=data_dir)
    first.wait_ready()
    assert "could be read by other users (mode 0755); it is now 0700" in first.stderr
    assert mode(data_dir) == 0o700
    database = data_dir / "gpuyard.db"
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        assert path.exists(), path
        assert mode(path) == 0o600, (path, oct(mode(path)))
    assert first.interrupt() == 0, first.output()

    database.chmod(0o644)
    data_dir.chmod(0o750)
    second = gpuyard(data_dir=data_dir)
    second.wait_ready()
    assert mode(data_dir) == 0o700 and mode(database) == 0o600
    assert f"the database file {database} could be read by other users" in second.stderr
    assert_no_traceback(second)
