"""The ``process`` runtime's sandbox: each workload inside bubblewrap (``bwrap``).

A sandboxed workload has its own PID, mount, IPC, UTS, network and cgroup namespaces. Its file
system is a new root holding only the system directories (read-only), the agent's Python and
gpuyard (read-only), the paths the operator lists (read-only), a fresh ``/proc``, a minimal
``/dev`` with the device nodes of its own GPUs, a private ``/tmp`` and ``/dev/shm``, and its own
home and run directories. The agent's state dir, the server's data dir, other workloads'
directories, ``/home``, ``/root``, ``/run`` and ``/var`` are not there. Its network is loopback
only; its published port reaches it through a relay (``process_relay.py``).

Who it runs as depends on the agent:

- **root** (``separate_users``): bubblewrap runs privileged, keeping only ``CAP_SETUID`` and
  ``CAP_SETGID`` for the wrapper, which starts the command under the workload's own uid (from
  the uid range) with no capabilities and ``no_new_privs``. This is the mode that *isolates*.
- **another user**: bubblewrap makes a user namespace, and the workload runs under the agent's
  own uid. Namespaces still hide the host, but a workload shares its uid with the agent and the
  other workloads, so the host does not count as isolating (``Isolation.isolates`` is false).

``open_sandbox`` tries bubblewrap once (a real sandbox running ``true``) and answers how this
host isolates; docs/agent-runtimes.md has the reasons behind each choice.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from gpuyard.agent.runtimes.sandbox_mounts import (
    MountPlan,
    NvidiaGpu,
    gpu_mounts,
    mask,
    nvidia_gpus,
    python_paths,
    read_only_mounts,
    system_mounts,
)
from gpuyard.agent.runtimes.sandbox_users import DEFAULT_UID_RANGE, UidRange
from gpuyard.core.errors import Unavailable
from gpuyard.core.hosts import Isolation

log = logging.getLogger(__name__)

HOSTNAME = "gpuyard"
TRIAL_TIMEOUT_S = 10.0
_REASON_CHARS = 400  # facts carry at most 500
_NAMESPACES = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net"]
_ROOT_CAPS = ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
_USER_NAMESPACE = ["--unshare-user", "--disable-userns"]


class SandboxMode(StrEnum):
    AUTO = "auto"
    """Sandbox when bubblewrap works; otherwise run workloads as before and say so in facts."""
    ON = "on"
    """Sandbox or refuse to start."""
    OFF = "off"
    """Never sandbox (the host does not isolate)."""


@dataclass(frozen=True)
class SandboxConfig:
    mode: SandboxMode = SandboxMode.AUTO
    uids: UidRange = field(default_factory=lambda: UidRange.parse(DEFAULT_UID_RANGE))
    read_only: tuple[str, ...] = ()
    """Host paths workloads may read (model directories, say), beside the system and Python."""
    private: tuple[str, ...] = ()
    """Paths no workload may see even where a read-only path holds them (the server's data dir);
    the agent's state dir is always private."""
    bwrap: str | None = None
    """The bubblewrap binary; found on ``PATH`` when ``None``."""


@dataclass(frozen=True)
class Sandbox:
    """A bubblewrap that works on this host, and how to put a workload in it."""

    bwrap: str
    version: str
    separate_users: bool
    uids: UidRange
    read_only: tuple[str, ...]
    private: tuple[str, ...]
    gpus: dict[str, NvidiaGpu] = field(default_factory=dict)

    def assigned_gpus(self, uuids: Sequence[str]) -> list[NvidiaGpu]:
        """The host GPUs among ``uuids`` (logical GPUs have no device and are left out)."""
        return [self.gpus[u] for u in uuids if u in self.gpus]

    def argv(
        self,
        command: Sequence[str],
        *,
        writable: Sequence[str],
        cwd: str,
        gpu_uuids: Sequence[str] = (),
        private: Sequence[str] = (),
    ) -> list[str]:
        """The bubblewrap command line that runs ``command`` in a new sandbox.

        ``writable`` directories (the workload's home and run dir) are bound read-write at their
        own paths; ``private`` ones are hidden as ``self.private`` are.
        """
        plan = MountPlan()
        system_mounts(plan)
        plan.special("--proc", "/proc")
        plan.special("--dev", "/dev")
        plan.tmpfs("/tmp", perms="1777")
        plan.tmpfs("/dev/shm", perms="1777")
        read_only_mounts(plan, self.read_only)
        mask(plan, [*self.private, *private])
        gpu_mounts(plan, self.assigned_gpus(gpu_uuids))
        for path in writable:
            plan.bind(path)
        isolation = _ROOT_CAPS if self.separate_users else _USER_NAMESPACE
        return [
            self.bwrap,
            *_NAMESPACES,
            "--unshare-cgroup-try",
            *isolation,
            "--hostname",
            HOSTNAME,
            *plan.args,
            "--chdir",
            cwd,
            "--",
            *command,
        ]

    def isolation(self) -> Isolation:
        name = f"bubblewrap {self.version}".strip()
        if self.separate_users:
            return Isolation(isolates=True, runtime="process", sandbox=name)
        return Isolation(
            isolates=False,
            runtime="process",
            sandbox=name,
            reason="the agent does not run as root, so every workload runs under the agent's "
            "own user: namespaces hide the host, but workloads are not kept from each other",
        )


def open_sandbox(config: SandboxConfig) -> tuple[Sandbox | None, Isolation]:
    """The sandbox this host can run (``None`` when none) and what to report about it.

    Raises ``Unavailable`` (``sandbox_unavailable``) when ``config.mode`` is ``on`` and
    bubblewrap does not work. The answer is cached per config: a process asks once.
    """
    sandbox, isolation = _probe(config)
    if sandbox is None and config.mode is SandboxMode.ON:
        raise Unavailable(
            f"--sandbox on, but no sandbox can run here: {isolation.reason}",
            code="sandbox_unavailable",
        )
    return sandbox, isolation


@functools.cache
def _probe(config: SandboxConfig) -> tuple[Sandbox | None, Isolation]:
    if config.mode is SandboxMode.OFF:
        return None, _unisolated("the sandbox is turned off (--sandbox off)")
    bwrap = shutil.which(config.bwrap or "bwrap")
    if bwrap is None:
        return None, _unisolated(
            "bubblewrap is not installed (apt-get install bubblewrap, dnf install bubblewrap)"
        )
    sandbox = Sandbox(
        bwrap=bwrap,
        version=_version(bwrap),
        separate_users=os.geteuid() == 0,
        uids=config.uids,
        read_only=tuple(python_paths()) + tuple(os.path.abspath(p) for p in config.read_only),
        private=tuple(os.path.abspath(p) for p in config.private),
        gpus=nvidia_gpus(),
    )
    problem = _trial(sandbox)
    if problem is not None:
        return None, _unisolated(f"bubblewrap cannot make a sandbox here: {problem}")
    isolation = sandbox.isolation()
    log.info(
        "workloads run in a %s sandbox (%s)",
        isolation.sandbox,
        f"a user of their own from uids {config.uids}"
        if sandbox.separate_users
        else "no user of their own: the agent is not root",
    )
    return sandbox, isolation


def _trial(sandbox: Sandbox) -> str | None:
    """Run ``true`` in a sandbox like a workload's; the reason when that fails."""
    argv = sandbox.argv(["true"], writable=[], cwd="/")
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=TRIAL_TIMEOUT_S,
            env={"PATH": "/usr/bin:/bin"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return done.stderr.decode(errors="replace").strip() or f"exit code {done.returncode}"
    return None


def _version(bwrap: str) -> str:
    try:
        done = subprocess.run([bwrap, "--version"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.decode(errors="replace").strip().removeprefix("bubblewrap ").strip()


def _unisolated(reason: str) -> Isolation:
    one_line = " ".join(reason.split())
    cut = one_line if len(one_line) <= _REASON_CHARS else one_line[: _REASON_CHARS - 1] + "…"
    return Isolation(isolates=False, runtime="process", reason=cut)
