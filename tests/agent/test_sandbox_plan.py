"""How the sandbox is put together, without running it: uids, mounts, GPU devices, the probe."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuyard.agent.runtimes.process_command import build_env
from gpuyard.agent.runtimes.sandbox import Sandbox, SandboxConfig, SandboxMode, open_sandbox
from gpuyard.agent.runtimes.sandbox_mounts import (
    MountPlan,
    gpu_mounts,
    mask,
    nvidia_gpus,
    python_paths,
    read_only_mounts,
)
from gpuyard.agent.runtimes.sandbox_users import NoFreeUid, UidRange
from gpuyard.core.errors import Unavailable
from gpuyard.core.workload import WorkloadSpec


def test_uid_range_hands_out_the_lowest_free_uid() -> None:
    uids = UidRange.parse("5000-5002")
    assert uids.allocate([]) == 5000
    assert uids.allocate([5000, 5002, 17]) == 5001
    with pytest.raises(NoFreeUid):
        uids.allocate([5000, 5001, 5002])
    assert 5001 in uids and 4999 not in uids and str(uids) == "5000-5002"


@pytest.mark.parametrize("text", ["0-100", "5000-4000", "x-y", "1000-4294967295"])
def test_uid_range_refuses_system_and_malformed_ranges(text: str) -> None:
    with pytest.raises(ValueError, match="uid range"):
        UidRange.parse(text)


def _dirs(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--dir"]


def test_mount_plan_makes_missing_parents_passable_and_binds_in_order() -> None:
    plan = MountPlan()
    plan.ro_bind("/usr")
    plan.tmpfs("/tmp", perms="1777")
    plan.bind("/tmp/state/workloads/wl_a/home")
    plan.ro_bind("/root/.pyenv/versions/3.11")
    plan.ro_bind("/usr/local/lib/models")  # inside /usr: it exists there, nothing to make
    assert _dirs(plan.args) == [
        "/tmp/state",
        "/tmp/state/workloads",
        "/tmp/state/workloads/wl_a",
        "/root",
        "/root/.pyenv",
        "/root/.pyenv/versions",
    ]
    assert plan.args[:3] == ["--ro-bind", "/usr", "/usr"]
    assert plan.args[3:6] == ["--perms", "1777", "--tmpfs"]
    assert all(
        plan.args[i - 2 : i] == ["--perms", "0755"] for i, a in enumerate(plan.args) if a == "--dir"
    )


def test_a_private_dir_under_a_readable_one_is_hidden_and_what_is_below_made_again(
    tmp_path: Path,
) -> None:
    (tmp_path / "venv" / "state" / "workloads").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    venv, state = str(tmp_path / "venv"), str(tmp_path / "venv" / "state")
    plan = MountPlan()
    read_only_mounts(plan, [venv, f"{venv}/lib", "/nonexistent/path"])
    mask(plan, [state, str(tmp_path / "elsewhere")])  # only what a mount shows needs hiding
    plan.bind(f"{state}/workloads/wl_a/home")
    assert plan.args.count("--ro-bind") == 1  # venv/lib is inside venv; a missing path is skipped
    hidden = plan.args.index("--tmpfs")
    assert plan.args[hidden + 1] == state
    assert _dirs(plan.args[hidden:]) == [f"{state}/workloads", f"{state}/workloads/wl_a"]


def test_python_paths_hold_the_interpreter_and_gpuyard_but_not_the_working_dir() -> None:
    import sys

    import gpuyard

    found = python_paths()
    assert sys.prefix in found or str(Path(sys.prefix).resolve()) in found
    package_root = str(Path(gpuyard.__file__).parents[1])
    assert any(package_root == p or package_root.startswith(p + "/") for p in found)
    assert "/" not in found
    cwd = str(Path.cwd())
    assert cwd not in found or cwd in (sys.prefix, package_root)


def _fake_nvidia(root: Path) -> Path:
    gpus = root / "gpus"
    for bus, uuid, minor in (
        ("0000:17:00.0", "GPU-aaaa", 0),
        ("0000:65:00.0", "GPU-bbbb", 2),
        ("0000:b3:00.0", "GPU-cccc", 1),
    ):
        (gpus / bus).mkdir(parents=True)
        (gpus / bus / "information").write_text(
            f"Model: \t\t NVIDIA H100\nGPU UUID: \t {uuid}\nDevice Minor: \t {minor}\n"
        )
    (gpus / "0000:ff:00.0").mkdir()  # no information file: skipped
    return gpus


def test_only_the_assigned_gpus_are_in_the_sandbox(tmp_path: Path) -> None:
    proc = _fake_nvidia(tmp_path / "nvidia")
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "nvidiactl").touch()
    (dev / "nvidia-uvm").touch()
    found = nvidia_gpus(proc)
    assert {u: g.minor for u, g in found.items()} == {"GPU-aaaa": 0, "GPU-bbbb": 2, "GPU-cccc": 1}
    plan = MountPlan()
    plan.special("--proc", "/proc")
    plan.special("--dev", "/dev")
    gpu_mounts(plan, [found["GPU-bbbb"]], dev=str(dev), proc=str(proc))
    binds = [plan.args[i + 1 : i + 3] for i, a in enumerate(plan.args) if a.endswith("-bind")]
    assert binds == [
        ["/dev/nvidiactl", "/dev/nvidiactl"],
        ["/dev/nvidia-uvm", "/dev/nvidia-uvm"],
        ["/dev/nvidia2", "/dev/nvidia2"],
        [str(proc / "0000:65:00.0"), "/proc/driver/nvidia/gpus/0000:65:00.0"],
    ]
    assert plan.args[plan.args.index("--tmpfs") + 1] == "/proc/driver/nvidia/gpus"
    assert _dirs(plan.args) == []  # /proc and /dev bring their own directories

    empty = MountPlan()
    gpu_mounts(empty, [], dev=str(dev), proc=str(proc))
    assert empty.args == []


def test_a_sandbox_with_real_gpus_names_them_by_uuid(tmp_path: Path) -> None:
    gpus = nvidia_gpus(_fake_nvidia(tmp_path))
    sandbox = Sandbox(
        bwrap="/usr/bin/bwrap",
        version="0.8.0",
        separate_users=True,
        uids=UidRange.parse("5000-5999"),
        read_only=(),
        private=(),
        gpus=gpus,
    )
    assert [g.minor for g in sandbox.assigned_gpus(["GPU-cccc", "GPU-logical"])] == [1]
    spec = WorkloadSpec(id="wl", gpu_indices=[2], gpu_uuids=["GPU-cccc"], command="true")
    env = build_env(spec, host_port=None, home="/h", visible_devices="GPU-cccc")
    assert env["CUDA_VISIBLE_DEVICES"] == env["NVIDIA_VISIBLE_DEVICES"] == "GPU-cccc"
    argv = sandbox.argv(["true"], writable=["/h"], cwd="/h", gpu_uuids=["GPU-cccc"])
    assert "--dev-bind" in argv and "--cap-add" in argv and "--unshare-user" not in argv
    assert argv[argv.index("--") + 1 :] == ["true"]


def test_an_agent_that_is_not_root_shares_its_user_and_does_not_count_as_isolating() -> None:
    sandbox = Sandbox(
        bwrap="/usr/bin/bwrap",
        version="0.8.0",
        separate_users=False,
        uids=UidRange.parse("5000-5999"),
        read_only=(),
        private=(),
    )
    argv = sandbox.argv(["true"], writable=[], cwd="/")
    assert argv[argv.index("--unshare-user") :][:2] == ["--unshare-user", "--disable-userns"]
    assert "--cap-add" not in argv
    isolation = sandbox.isolation()
    assert not isolation.isolates and "not run as root" in (isolation.reason or "")


def test_off_and_missing_bubblewrap_do_not_isolate_and_on_refuses() -> None:
    off = open_sandbox(SandboxConfig(mode=SandboxMode.OFF))
    assert off[0] is None and off[1].reason == "the sandbox is turned off (--sandbox off)"
    missing = SandboxConfig(bwrap="/nonexistent/bwrap")
    sandbox, isolation = open_sandbox(missing)
    assert sandbox is None and not isolation.isolates
    assert "bubblewrap is not installed" in (isolation.reason or "")
    with pytest.raises(Unavailable) as refused:
        open_sandbox(SandboxConfig(mode=SandboxMode.ON, bwrap="/nonexistent/bwrap"))
    assert refused.value.code == "sandbox_unavailable"


def test_a_long_failure_is_cut_to_fit_the_facts(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && exit 0\nyes broken | head -300 >&2\nexit 1\n'
    )
    fake.chmod(0o755)
    sandbox, isolation = open_sandbox(SandboxConfig(bwrap=str(fake)))
    assert sandbox is None and not isolation.isolates
    reason = isolation.reason or ""
    assert reason.startswith("bubblewrap cannot make a sandbox here: broken broken")
    assert len(reason) <= 400 and "\n" not in reason
