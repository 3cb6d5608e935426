"""The state dir: the registration is kept (privately) and the join token is never spent twice."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from gpuyard.agent.runtimes.process import ProcessRuntime
from gpuyard.agent.state import AgentState, Registration, StateError
from gpuyard.agent.transport import AgentRejected
from gpuyard.core.hosts import PortRange

from .fake_server import FakeServer
from .supervisor_kit import make_supervisor


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_registration_is_saved_privately_and_reused_without_registering_again(
    runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    server = FakeServer()
    first = make_supervisor(server, runtime, state_dir, port_range, name="rig-1")
    report = await first.step()

    saved = json.loads((state_dir / "host.json").read_text())
    assert saved["host_id"] == report.host_id == "host_1"
    assert saved["server_url"] == "http://gpuyard.test"
    assert saved["credential"] in server.credentials
    assert mode(state_dir) == 0o700 and mode(state_dir / "host.json") == 0o600
    assert server.registrations[0].name == "rig-1"
    assert server.registrations[0].facts.gpus[0].name == "RTX 4090"

    # The agent restarts, and its unit still passes the (now spent) token.
    again = make_supervisor(server, runtime, state_dir, port_range, join_token="gyj_test")
    await again.step()
    await again.step()
    assert len(server.registrations) == 1
    assert len(server.heartbeats) == 3 and again.host_id == "host_1"


async def test_a_spent_or_bad_token_is_refused_and_nothing_is_saved(
    runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    sup = make_supervisor(FakeServer(), runtime, state_dir, port_range, join_token="gyj_nope")
    with pytest.raises(AgentRejected) as caught:
        await sup.step()
    assert caught.value.code == "invalid_join_token"
    assert not (state_dir / "host.json").exists()


async def test_no_registration_and_no_token_is_a_clear_error(
    runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    sup = make_supervisor(FakeServer(), runtime, state_dir, port_range, join_token=None)
    with pytest.raises(StateError, match="give a join token with --token or GPUYARD_JOIN_TOKEN"):
        await sup.step()


async def test_a_registration_with_another_server_is_not_used(
    runtime: ProcessRuntime, state_dir: Path, port_range: PortRange
) -> None:
    AgentState.open(state_dir).save_registration(
        Registration(server_url="http://elsewhere:8080", host_id="host_9", credential="gyh_x")
    )
    sup = make_supervisor(FakeServer(), runtime, state_dir, port_range)
    with pytest.raises(StateError, match=r"not http://gpuyard\.test"):
        await sup.step()


def test_a_damaged_host_file_says_what_to_do(state_dir: Path) -> None:
    state = AgentState.open(state_dir)
    state.host_path.write_text("{not json")
    with pytest.raises(StateError, match=r"damaged.*delete it"):
        state.load_registration()


def test_open_tightens_a_loose_state_dir(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    AgentState.open(loose)
    assert mode(loose) == 0o700


def test_one_agent_per_state_dir(state_dir: Path) -> None:
    state = AgentState.open(state_dir)
    with state.lock(), pytest.raises(StateError, match="another gpuyard agent"), state.lock():
        pass
    with state.lock():  # released
        pass


def test_the_gpu_seed_is_kept(state_dir: Path) -> None:
    assert AgentState.open(state_dir).gpu_seed() == AgentState.open(state_dir).gpu_seed()
