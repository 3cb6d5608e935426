"""Outside in: thirty one-replica clusters on one ``gpuyard up`` all turn ``healthy``.

The real command in a subprocess, its local agent on the ``process`` runtime, thirty real
``python3 -m http.server`` replicas, real health probes. Three times the clusters controller's
batch: a controller that starved the rows past its first batch would leave twenty of them
``provisioning`` for ever.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.cli.up_kit import Launcher, wait_for_hosts

pytestmark = pytest.mark.slow

CLUSTERS = 30
HEALTHY_WITHIN_S = 60.0


@pytest.mark.timeout(300)
def test_thirty_clusters_on_one_up_are_all_healthy_within_a_minute(gpuyard: Launcher) -> None:
    server = gpuyard("--gpus", f"RTX 4090:{CLUSTERS}")
    server.wait_ready()
    (key,) = server.printed_keys()
    wait_for_hosts(server, key, 1)
    client = httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    ids = []
    for i in range(CLUSTERS):
        r = client.post(
            "/v1/clusters",
            json={
                "name": f"web-{i}",
                "gpu_type": "rtx-4090",
                "replicas": 1,
                "container": "python:3",
                "command": "exec python3 -m http.server $PORT --bind 127.0.0.1",
                "health_path": "/",
                "models": [f"web-{i}"],
            },
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    started = time.monotonic()
    statuses: dict[str, str] = {}
    while time.monotonic() - started < HEALTHY_WITHIN_S:
        listed = client.get("/v1/clusters", params={"limit": 100}).json()["data"]
        statuses = {c["id"]: c["status"] for c in listed}
        if all(statuses.get(i) == "healthy" for i in ids):
            break
        time.sleep(0.2)
    took = time.monotonic() - started
    unhealthy = {i: s for i, s in statuses.items() if s != "healthy"}
    assert not unhealthy, f"after {took:.0f}s: {unhealthy}\n{server.output()[-4000:]}"
    assert len(statuses) == CLUSTERS
    client.close()
