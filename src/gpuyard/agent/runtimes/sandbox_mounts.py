"""What a sandboxed workload's file system is made of, as bubblewrap mount arguments.

``MountPlan`` keeps the arguments in order and creates each destination's missing parents in the
sandbox (mode 0755, so the workload's own user can pass through them; bubblewrap would copy the
host's mode, and ``/root`` is 0700). The rest of this module finds what to mount: the system
directories, the directories the agent's Python and gpuyard live in, and the device nodes of
NVIDIA GPUs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SYSTEM_DIRS = ("/usr", "/etc", "/sys")
"""Bound read-only where they exist. ``/home``, ``/root``, ``/run``, ``/var``, ``/srv``, ``/mnt``,
``/opt`` and ``/tmp`` are not: the agent's state, the server's data and the Docker socket live
there."""
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Symlinks into ``/usr`` on a merged-/usr system (made again as symlinks), else bound read-only."""
NVIDIA_CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")

_GPUYARD_ROOT = Path(__file__).parents[3]  # the directory the gpuyard package is imported from


def within(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or lies below it (both absolute and normalised)."""
    return root == "/" or path == root or path.startswith(root.rstrip("/") + "/")


class MountPlan:
    def __init__(self) -> None:
        self.args: list[str] = []
        self._layers: list[tuple[str, bool]] = [("/", False)]  # (mount point, brings content)
        self._made: set[str] = {"/"}

    def covered(self, path: str) -> bool:
        """Whether ``path`` lies in a mount that brings its content (a bind, ``/proc``), rather
        than in an empty one (the new root, a tmpfs) where it must be made."""
        deepest = ("", False)
        for root, content in self._layers:
            if within(path, root) and len(root) >= len(deepest[0]):
                deepest = (root, content)
        return deepest[1]

    def ro_bind(self, path: str, dest: str | None = None) -> None:
        self._bind("--ro-bind", path, dest)

    def bind(self, path: str) -> None:
        self._bind("--bind", path)

    def dev_bind(self, path: str) -> None:
        self._bind("--dev-bind", path)

    def symlink(self, target: str, path: str) -> None:
        self.args += ["--symlink", target, path]
        self._made.add(path)

    def tmpfs(self, path: str, *, perms: str | None = None) -> None:
        """An empty file system at ``path``; what is below it must be made again."""
        self._parents(path)
        self.args += [*(["--perms", perms] if perms else []), "--tmpfs", path]
        self._mounted(path, content=False)

    def special(self, flag: str, path: str) -> None:
        """``--proc`` or ``--dev`` at ``path``."""
        self._parents(path)
        self.args += [flag, path]
        self._mounted(path, content=True)

    def _bind(self, flag: str, path: str, dest: str | None = None) -> None:
        """The host's ``path`` at ``dest`` (by default the same path) in the sandbox."""
        dest = dest or path
        self._parents(dest)
        self.args += [flag, path, dest]
        self._mounted(dest, content=True)

    def _mounted(self, path: str, *, content: bool) -> None:
        self._layers = [(root, c) for root, c in self._layers if not within(root, path)]
        self._layers.append((path, content))
        self._made = {made for made in self._made if not within(made, path) or made == path}
        self._made.add(path)

    def _parents(self, path: str) -> None:
        parents = list(reversed(Path(path).parents))[1:]  # outermost first, without "/"
        for parent in map(str, parents):
            if parent in self._made or self.covered(parent):
                continue
            self.args += ["--perms", "0755", "--dir", parent]
            self._made.add(parent)


def system_mounts(plan: MountPlan, *, root: str = "/") -> None:
    """The system directories, read-only, as the host lays them out."""
    for name in (*SYSTEM_DIRS, *SYSTEM_LINKS):
        host = os.path.join(root, name.lstrip("/"))
        if os.path.islink(host):
            plan.symlink(os.readlink(host), name)
        elif os.path.isdir(host):
            plan.ro_bind(name)


def python_paths() -> list[str]:
    """Where the agent's interpreter, its virtual environment and gpuyard live.

    A built-in worker runs on the agent's own Python, so these are readable in every sandbox;
    each path is given both as the interpreter sees it and resolved (a venv behind a symlink).
    The agent's working directory is left out even where ``sys.path`` names it.
    """
    cwd = os.getcwd()
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    candidates += [str(_GPUYARD_ROOT)]
    candidates += [p for p in sys.path if p and os.path.isabs(p) and p != cwd]
    found: list[str] = []
    for path in candidates:
        for form in (os.path.abspath(path), os.path.realpath(path)):
            if form != "/" and os.path.isdir(form) and form not in found:
                found.append(form)
    return found


def read_only_mounts(plan: MountPlan, paths: Iterable[str]) -> None:
    """Bind ``paths`` read-only, outermost first, skipping what an earlier mount already holds."""
    for path in sorted(set(paths), key=lambda p: (p.count("/"), p)):
        if path != "/" and os.path.exists(path) and not plan.covered(path):
            plan.ro_bind(path)


def mask(plan: MountPlan, private: Sequence[str]) -> None:
    """Hide each private directory that a read-only mount would otherwise show."""
    for path in private:
        if plan.covered(path) and os.path.isdir(path):
            plan.tmpfs(path)


@dataclass(frozen=True, slots=True)
class NvidiaGpu:
    uuid: str
    minor: int
    proc_dir: str
    """``/proc/driver/nvidia/gpus/<bus id>``: what the driver tells about this GPU."""


def nvidia_gpus(proc: Path = NVIDIA_PROC) -> dict[str, NvidiaGpu]:
    """The host's NVIDIA GPUs by uuid, from the driver's ``information`` files; none without."""
    found: dict[str, NvidiaGpu] = {}
    try:
        entries = sorted(proc.iterdir())
    except OSError:
        return found
    for entry in entries:
        fields: dict[str, str] = {}
        try:
            text = (entry / "information").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        uuid, minor = fields.get("GPU UUID"), fields.get("Device Minor")
        if uuid and minor and minor.isdigit():
            found[uuid] = NvidiaGpu(uuid=uuid, minor=int(minor), proc_dir=str(entry))
    return found


def gpu_mounts(
    plan: MountPlan, gpus: Sequence[NvidiaGpu], *, dev: str = "/dev", proc: str = str(NVIDIA_PROC)
) -> None:
    """Only the assigned GPUs: their device nodes and driver entries, plus the control nodes.

    As the NVIDIA container toolkit does, the other GPUs' ``/dev/nvidiaN`` are absent and their
    ``/proc/driver/nvidia/gpus`` entries hidden, so CUDA sees the assigned GPUs only.
    """
    if not gpus:
        return
    for name in NVIDIA_CONTROL_NODES:
        if os.path.exists(os.path.join(dev, name)):
            plan.dev_bind(os.path.join("/dev", name))
    for gpu in gpus:
        plan.dev_bind(f"/dev/nvidia{gpu.minor}")
    if os.path.isdir(proc):
        plan.tmpfs(str(NVIDIA_PROC))
        for gpu in gpus:
            plan.ro_bind(gpu.proc_dir, str(NVIDIA_PROC / os.path.basename(gpu.proc_dir)))
