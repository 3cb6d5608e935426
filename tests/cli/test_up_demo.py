"""``gpuyard up --demo`` end to end: its progress is shown, the embeddings cluster of the real
built-in worker becomes healthy and answers ``/v1/embeddings``, and Ctrl-C stops the workers.

Needs the ``workers`` extra (torch, sentence-transformers, the MiniLM package); skipped without
it, or failing when ``GPUYARD_TEST_REQUIRE_WORKERS=1``. The speech cluster needs ``espeak-ng``
on the machine: the test only asks that its outcome (healthy or failed, and why) is shown.
"""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest

from gpuyard.workers.embedders import minilm_available
from tests.cli.up_kit import Launcher, Server, assert_no_traceback, group_runs

pytestmark = pytest.mark.slow

DEMO_DEADLINE_S = 200.0

if not minilm_available():
    if os.environ.get("GPUYARD_TEST_REQUIRE_WORKERS") == "1":
        pytest.fail("the workers extra is required (GPUYARD_TEST_REQUIRE_WORKERS=1)")
    pytest.skip("needs the workers extra (torch, sentence-transformers)", allow_module_level=True)


def _wait_for(server: Server, text: str) -> None:
    deadline = time.monotonic() + DEMO_DEADLINE_S
    while text not in server.stderr:
        assert server.popen.poll() is None, server.output()
        assert time.monotonic() < deadline, f"never printed {text!r}\n{server.output()}"
        time.sleep(0.2)


@pytest.mark.timeout(DEMO_DEADLINE_S + 60)
def test_demo_shows_progress_and_serves_embeddings_until_stopped(gpuyard: Launcher) -> None:
    server = gpuyard("--demo")
    server.wait_ready()

    _wait_for(server, "demo: deploying demo-embeddings, demo-speech on the local host")
    _wait_for(server, "demo: demo-embeddings is provisioning")
    _wait_for(server, "demo: demo-embeddings is healthy; call it with the openai SDK")
    key = (server.data_dir / "admin-key").read_text().strip()
    r = httpx.post(
        f"{server.base_url}/v1/embeddings",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "all-MiniLM-L6-v2", "input": "hello", "encoding_format": "float"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["data"][0]["embedding"]) == 384
    deadline = time.monotonic() + DEMO_DEADLINE_S
    while not any(
        f"demo-speech {how}" in server.stderr for how in ("is healthy;", "failed:")
    ):  # without espeak-ng it fails, and says why
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.2)

    records = [
        json.loads(p.read_text()) for p in server.data_dir.glob("agent/workloads/*/record.json")
    ]
    running = [r["pid"] for r in records if r.get("pid") and not r.get("failed")]
    assert server.interrupt() == 0, server.output()
    for pid in running:
        if group_runs(pid):
            raise AssertionError(f"worker group {pid} still runs after Ctrl-C\n{server.output()}")
    assert_no_traceback(server)
