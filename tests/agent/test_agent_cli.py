"""``gpuyard agent`` on the command line: help, and errors as messages (never tracebacks)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gpuyard.cli.agent import register

from .fake_server import FakeServer, agent_api, serve_in_thread

runner = CliRunner()


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """gpuyard"""

    register(app)
    return app


def plain(text: str) -> str:
    """Output without rich's boxes and wrapping, so messages can be matched."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_help_explains_the_options(app: typer.Typer) -> None:
    result = runner.invoke(app, ["agent", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = plain(result.output)
    for option in ("--server", "--token", "--gpus", "--state-dir", "--runtime", "--port-range"):
        assert option in out
    assert "GPUYARD_JOIN_TOKEN" in out and "KillMode=process" in out
    assert "RTX 4090:2" in out and "40000-40999" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpus", "RTX 4090:lots"], "Invalid value for '--gpus': bad GPU count 'lots'"),
        (["--gpus", ""], "Invalid value for '--gpus': empty GPU declaration"),
        (["--port-range", "50000-40000"], "Invalid value for '--port-range': bad port range"),
        (["--server", "gpu.example.com"], "Invalid value for '--server': bad server URL"),
        (["--runtime", "podman"], "Invalid value for '--runtime'"),
    ],
)
def test_bad_values_are_usage_errors(
    app: typer.Typer, tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["agent", "--state-dir", str(tmp_path / "s"), *args])
    assert result.exit_code == 2
    assert message in plain(result.output)
    assert not (tmp_path / "s").exists()


def test_an_unreachable_server_at_first_start(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(app, agent_args(tmp_path, "http://127.0.0.1:9", "gyj_test"))
    assert result.exit_code == 1
    out = plain(result.output)
    assert "error: cannot reach the gpuyard server" in out and "--server" in out
    assert "Traceback" not in out


def test_a_refused_token(app: typer.Typer, tmp_path: Path) -> None:
    with serve_in_thread(agent_api(FakeServer(tokens={"gyj_other"}))) as url:
        result = runner.invoke(app, agent_args(tmp_path, url, "gyj_wrong"))
    assert result.exit_code == 1
    out = plain(result.output)
    assert "the server refused this agent: this join token is invalid, used or revoked" in out
    assert "invalid_join_token" in out and "Ask the operator for a new join token" in out
    assert "Traceback" not in out


def test_the_token_may_come_from_the_environment(app: typer.Typer, tmp_path: Path) -> None:
    server = FakeServer(tokens={"gyj_env"})
    server.down = True  # registration is refused after the token was read
    with serve_in_thread(agent_api(server)) as url:
        args = agent_args(tmp_path, url, None)
        result = runner.invoke(app, args, env={"GPUYARD_JOIN_TOKEN": "gyj_env"})
    assert result.exit_code == 1
    assert "cannot reach the gpuyard server" in plain(result.output)
    assert server.refused == 1


def test_no_server_and_no_registration(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(app, ["agent", "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 1
    assert "--server is needed" in plain(result.output)


def agent_args(tmp_path: Path, server: str, token: str | None) -> list[str]:
    args = ["agent", "--server", server, "--state-dir", str(tmp_path / "s")]
    args += ["--runtime", "process", "--gpus", "RTX 4090:1", "--address", "127.0.0.1"]
    return args + (["--token", token] if token else [])


def test_runtime_docker_uses_docker_host_and_needs_an_engine(
    app: typer.Typer, tmp_path: Path
) -> None:
    args = [a if a != "process" else "docker" for a in agent_args(tmp_path, "http://x", "gyj_t")]
    dead = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "GPUYARD_RUNTIME": "process"}
    result = runner.invoke(app, args, env=dead)  # the flag wins over GPUYARD_RUNTIME
    assert result.exit_code == 1
    out = plain(result.output)
    assert "no Docker engine answers (is dockerd running, is DOCKER_HOST right?)" in out
    assert "Traceback" not in out
    by_env = [
        a for a in agent_args(tmp_path, "http://x", "gyj_t") if a not in ("--runtime", "process")
    ]
    result = runner.invoke(app, by_env, env={**dead, "GPUYARD_RUNTIME": "docker"})
    assert result.exit_code == 1 and "no Docker engine answers" in plain(result.output)
