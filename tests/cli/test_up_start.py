"""Starting ``gpuyard up`` as a newcomer does: a port in use, a client that must find a server on
another port, and a script that waits for ``/readyz`` and creates a cluster at once.

Real subprocesses (``gpuyard up`` and the ``gpuyard`` client) over loopback.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.cli.up_kit import (
    Launcher,
    assert_no_traceback,
    base_env,
    free_port,
    gpuyard_command,
    listening,
)

pytestmark = pytest.mark.slow


def client(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*gpuyard_command(), *args],
        capture_output=True,
        text=True,
        env={**base_env(home), **(env or {})},
        timeout=60,
        check=False,
    )


def test_a_port_in_use_stops_before_anything_is_created(gpuyard: Launcher, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = gpuyard(port=port)
        code = server.wait_exit()

    assert code == 2, server.output()
    assert f"port {port} on 127.0.0.1 is already in use" in server.stderr, server.output()
    assert "--port" in server.stderr
    assert not server.data_dir.exists()  # no data dir, no database, no key shown once
    assert server.printed_keys() == []
    assert "Operator" not in server.stderr
    assert_no_traceback(server)


def test_the_client_finds_a_server_on_another_port_through_the_recorded_url(
    gpuyard: Launcher, tmp_path: Path
) -> None:
    server = gpuyard()
    server.wait_ready()
    assert server.port != 8080
    recorded = server.data_dir / "url"
    assert recorded.read_text().strip() == f"http://127.0.0.1:{server.port}"
    env = {"GPUYARD_DATA_DIR": str(server.data_dir)}

    done = client(tmp_path, "me", "--raw", env=env)  # no --url, no GPUYARD_URL: the file
    assert done.returncode == 0, done.stderr
    assert '"operator"' in done.stdout

    dead = f"http://127.0.0.1:{free_port()}"
    done = client(tmp_path, "me", env={**env, "GPUYARD_URL": dead})  # the variable wins
    assert done.returncode == 1
    assert f"cannot reach {dead} (GPUYARD_URL)" in done.stderr, done.stderr
    done = client(tmp_path, "me", "--url", server.base_url, env={**env, "GPUYARD_URL": dead})
    assert done.returncode == 0, done.stderr  # and --url wins over it

    assert server.interrupt() == 0
    done = client(tmp_path, "me", env=env)
    assert done.returncode == 1
    assert f"cannot reach http://127.0.0.1:{server.port}" in done.stderr
    assert str(recorded) in done.stderr  # where that URL came from
    assert "--url or GPUYARD_URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_a_recorded_url_the_client_tries_the_default_and_says_how_to_choose(
    tmp_path: Path,
) -> None:
    done = client(tmp_path, "me", env={"GPUYARD_DATA_DIR": str(tmp_path / "none")})
    if listening(8080):
        pytest.skip("something listens on 8080 here")
    assert done.returncode == 1
    assert "cannot reach http://127.0.0.1:8080 (the default)" in done.stderr
    assert "--url or GPUYARD_URL" in done.stderr


def test_once_ready_a_cluster_can_be_created_at_once(gpuyard: Launcher) -> None:
    """A script that waits for /readyz (not /healthz) finds the local host joined."""
    server = gpuyard("--gpus", "RTX 4090:1")
    server.wait_ready()  # polls /readyz
    key = (server.data_dir / "admin-key").read_text().strip()
    r = httpx.post(
        f"{server.base_url}/v1/clusters",
        headers={"Authorization": f"Bearer {key}"},
        json={"name": "web", "gpu_type": "rtx-4090", "replicas": 1, "container": "nginx"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    ready = httpx.get(f"{server.base_url}/readyz", timeout=10).json()
    assert ready["status"] == "ready" and ready["waiting_for"] == []
