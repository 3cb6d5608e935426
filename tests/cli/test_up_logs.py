"""``gpuyard vms logs`` of a running instance, end to end: a real ``gpuyard up``, an instance
that prints a numbered line five times a second, and the real ``gpuyard`` client (which finds
the server through the URL ``up`` recorded).
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.cli.up_kit import START_TIMEOUT_S, Launcher, base_env, gpuyard_command

pytestmark = pytest.mark.slow

COUNTER = 'i=0; while true; do echo "line $i"; i=$((i+1)); sleep 0.2; done'
LINE = re.compile(r"^line (\d+)$")


def test_logs_of_a_running_instance_are_shown_and_followed(
    gpuyard: Launcher, tmp_path: Path
) -> None:
    server = gpuyard("--gpus", "RTX 4090:1", env={"GPUYARD_HEARTBEAT_SECONDS": "1"})
    server.wait_ready()
    env = {**base_env(tmp_path), "GPUYARD_DATA_DIR": str(server.data_dir)}

    def gy(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*gpuyard_command(), *args], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done

    (offer,) = json.loads(gy("offers", "search", "--raw").stdout)
    vm = json.loads(gy("vms", "create", str(offer["id"]), "--command", COUNTER, "--raw").stdout)

    deadline = time.monotonic() + START_TIMEOUT_S
    while not LINE.match((shown := gy("vms", "logs", vm["id"], "--tail", "1").stdout).strip()):
        assert time.monotonic() < deadline, f"no output shown\n{server.output()}"
        time.sleep(0.2)
    assert len(shown.splitlines()) == 1

    follower = subprocess.Popen(
        [*gpuyard_command(), "vms", "logs", vm["id"], "--follow", "--tail", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in follower.stdout or []])
    reader.start()
    try:
        numbers: list[int] = []
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(numbers) < 20:  # four seconds of output, arriving heartbeat by heartbeat
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"followed only {numbers}\n{server.output()}"
            try:
                found = LINE.match(lines.get(timeout=remaining).strip())
            except queue.Empty:
                continue
            assert found is not None
            numbers.append(int(found.group(1)))
        assert numbers == list(range(numbers[0], numbers[0] + 20))  # in order, none twice or lost

        gy("vms", "stop", vm["id"])
        assert follower.wait(timeout=START_TIMEOUT_S) == 0  # the instance ended: so does --follow
    finally:
        if follower.poll() is None:
            follower.send_signal(signal.SIGKILL)
        follower.wait()
        reader.join(timeout=10)
    assert "Traceback" not in (follower.stderr.read() if follower.stderr else "")
    assert server.interrupt() == 0, server.output()
