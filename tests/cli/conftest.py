"""Fixtures of the command-line tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.up_kit import Launcher


@pytest.fixture
def gpuyard(tmp_path: Path) -> Iterator[Launcher]:
    """Start ``gpuyard <args>``; every process started is killed at teardown, pass or fail."""
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.kill_all()
