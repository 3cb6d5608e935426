"""Getting a workload's directories and launch file ready, before its wrapper starts.

When the workload has a uid of its own, the agent (root) writes into a home that uid owns, so
every write there goes through file descriptors opened without following symlinks: a workload
that plants ``~/.ssh`` as a link to a host file gets an error, not a root write through it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from typing import Any

from gpuyard.agent.runtimes.process_state import WorkloadDir

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


class UnsafeHome(OSError):
    """The workload's home holds something the agent will not write through."""


def prepare_dirs(wdir: WorkloadDir, uid: int | None) -> None:
    """The workload's directory (0700), its run dir (0700, the agent's) and its home.

    A home with a uid of its own is owned by that uid, mode 0711: the wrapper, root inside the
    sandbox but with no capability to bypass permissions, must still enter it to start there.
    """
    wdir.path.mkdir(parents=True, exist_ok=True, mode=0o700)
    wdir.run.mkdir(exist_ok=True, mode=0o700)
    wdir.home.mkdir(exist_ok=True, mode=0o700)
    if uid is not None:
        fd = os.open(wdir.home, _DIR)
        try:
            os.fchown(fd, uid, uid)
            os.fchmod(fd, 0o711)
        finally:
            os.close(fd)


def write_authorized_keys(wdir: WorkloadDir, keys: Sequence[str], uid: int | None) -> None:
    """``~/.ssh/authorized_keys`` (mode 600, the workload's) with ``keys``, if there are any."""
    lines = [k.strip() for k in keys if k.strip()]
    if not lines:
        return
    home = os.open(wdir.home, _DIR)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(".ssh", 0o700, dir_fd=home)
        ssh = os.open(".ssh", _DIR, dir_fd=home)  # ELOOP when the workload made it a symlink
        try:
            fd = os.open(
                "authorized_keys", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600, dir_fd=ssh
            )
            with os.fdopen(fd, "w") as f:
                found = os.fstat(fd)
                if found.st_nlink != 1 or found.st_uid not in (os.geteuid(), uid):
                    raise UnsafeHome(f"{wdir.home}/.ssh/authorized_keys is not the workload's own")
                os.ftruncate(fd, 0)
                f.write("\n".join(lines) + "\n")
                os.fchmod(fd, 0o600)
                if uid is not None:
                    os.fchown(fd, uid, uid)
            if uid is not None:
                os.fchown(ssh, uid, uid)
        finally:
            os.close(ssh)
    finally:
        os.close(home)


def write_launch(wdir: WorkloadDir, launch: dict[str, Any]) -> None:
    """``run/launch.json`` (mode 600) for the wrapper, which deletes it once read."""
    tmp = wdir.launch_path.with_name(wdir.launch_path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(launch, f)
    os.replace(tmp, wdir.launch_path)
