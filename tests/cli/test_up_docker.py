"""``gpuyard up --runtime docker`` end to end, on the session's private engine (``DOCKER_HOST``).

The real command in a subprocess; its local agent runs a cluster replica as a container of the
engine, the real health probe finds it healthy, the gateway reaches it through the cluster's
endpoint, and Ctrl-C stops the container. Without an engine, ``--runtime docker`` refuses to start.
"""

from __future__ import annotations

import time

import docker
import httpx
import pytest

from tests.cli.up_kit import Launcher, assert_no_traceback, wait_for_hosts
from tests.docker_engine import BUSYBOX_IMAGE, PrivateEngine

pytestmark = [pytest.mark.slow, pytest.mark.docker]

SERVE = (
    'mkdir -p /www && echo "$GREETING from a container" > /www/index.html'
    ' && exec httpd -f -p "$PORT" -h /www'
)
HEALTHY_WITHIN_S = 60.0


def _containers(engine: PrivateEngine) -> dict[str, str]:
    client: docker.DockerClient = engine.client()
    try:
        found = client.containers.list(all=True, filters={"label": "gpuyard.workload_id"})
        return {c.name: c.status for c in found}
    finally:
        client.close()


@pytest.mark.timeout(180)
def test_a_cluster_runs_as_a_container_and_answers_through_the_gateway(
    gpuyard: Launcher, docker_engine: PrivateEngine
) -> None:
    server = gpuyard(
        "--gpus", "RTX 4090:1", "--runtime", "docker", env={"DOCKER_HOST": docker_engine.url}
    )
    try:
        server.wait_ready()
        assert "Local agent: docker runtime" in server.stderr, server.output()
        key = (server.data_dir / "admin-key").read_text().strip()
        [host] = wait_for_hosts(server, key, 1)
        assert host["isolates"] is True
        assert host["facts"]["isolation"]["runtime"] == "docker"  # type: ignore[index]
        client = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        body = {
            "name": "web",
            "gpu_type": "rtx-4090",
            "replicas": 1,
            "container": BUSYBOX_IMAGE,
            "command": SERVE,
            "env": {"GREETING": "hello"},
            "health_path": "/index.html",
        }
        r = client.post("/v1/clusters", json=body)
        assert r.status_code == 201, r.text
        cluster = r.json()
        deadline = time.monotonic() + HEALTHY_WITHIN_S
        while client.get(f"/v1/clusters/{cluster['id']}").json()["status"] != "healthy":
            assert time.monotonic() < deadline, f"{_containers(docker_engine)}\n{server.output()}"
            time.sleep(0.2)
        page = client.get(f"{cluster['endpoint']}/index.html")
        assert page.status_code == 200 and page.text == "hello from a container\n", page.text
        [(name, state)] = _containers(docker_engine).items()
        assert name.startswith("gpuyard-wl_") and state == "running"
        client.close()

        assert server.interrupt() == 0, server.output()
        assert list(_containers(docker_engine).values()) == ["exited"]  # stopped with up
        assert_no_traceback(server)
    finally:
        docker_engine.remove_all_containers()


def test_runtime_docker_without_an_engine_refuses_to_start(gpuyard: Launcher) -> None:
    server = gpuyard("--runtime", "docker", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert server.wait_exit() == 2, server.output()
    assert "--runtime docker: no Docker engine answers" in server.stdout + server.stderr
