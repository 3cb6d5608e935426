"""``./scripts/up``: what it says while it installs, run for real against a stand-in ``.venv``.

The script is copied into a scratch checkout whose ``.venv/bin/python`` and ``.venv/bin/gpuyard``
record how they were called (nothing is installed), so the test sees the order of the steps and
the arguments pip and ``gpuyard up`` get.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "up"

FAKE_PYTHON = """#!/bin/sh
echo "python $*" >> "$CALLS"
if [ "$1" = "-c" ]; then exit "${WORKERS_MISSING:-0}"; fi
echo "pip says: $*"
"""
FAKE_GPUYARD = """#!/bin/sh
echo "gpuyard $*" >> "$CALLS"
echo "gpuyard up is running"
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "scripts" / "up")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("python", FAKE_PYTHON), ("gpuyard", FAKE_GPUYARD)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return root


def run(checkout: Path, *args: str, missing: bool = False) -> tuple[str, list[str]]:
    calls = checkout / "calls"
    env = {**os.environ, "CALLS": str(calls), "WORKERS_MISSING": "1" if missing else "0"}
    done = subprocess.run(
        [str(checkout / "scripts" / "up"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, in the order it was written
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout
    return done.stdout, calls.read_text().splitlines()


def test_demo_shows_each_step_and_pips_progress_the_first_time(checkout: Path) -> None:
    out, calls = run(checkout, "--demo", "--port", "9000", missing=True)
    steps = [line for line in out.splitlines() if line.startswith("==> [")]
    assert [s[:10] for s in steps] == ["==> [1/3] ", "==> [2/3] ", "==> [3/3] "]
    assert "1.5 GB" in steps[1]
    installs = [c for c in calls if " pip install " in c]
    big = [c for c in installs if "torch" in c or "workers" in c]
    assert len(big) == 2 and all("--progress-bar on" in c and "--quiet" not in c for c in big)
    assert calls[-1] == "gpuyard up --demo --port 9000"
    assert out.index("==> [3/3]") < out.index("gpuyard up is running")


def test_demo_once_installed_is_quiet(checkout: Path) -> None:
    out, calls = run(checkout, "--demo")
    big = [c for c in calls if " pip install " in c and ("torch" in c or "workers" in c)]
    assert len(big) == 2 and all("--quiet" in c for c in big)
    assert "installed; checking" in out


def test_without_demo_two_steps(checkout: Path) -> None:
    out, calls = run(checkout, "--port", "9000")
    steps = [line for line in out.splitlines() if line.startswith("==> [")]
    assert [s[:10] for s in steps] == ["==> [1/2] ", "==> [2/2] "]
    assert not any("workers" in c for c in calls)
    assert calls[-1] == "gpuyard up --port 9000"
