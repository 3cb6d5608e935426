"""The agent's state dir: its registration, its workloads' records, its logical GPU seed.

    <state dir>/                 mode 0700 (default ~/.gpuyard-agent)
        host.json                {server_url, host_id, credential, registered_at}, mode 0600
        agent.lock               held (flock) by the one agent using this dir; holds its pid
        gpu-seed                 logical GPU uuids derive from it (``agent/gpus.py``)
        workloads/<id>/          the process runtime's records (``runtimes/process_state.py``)

``host.json`` is written once the join token is spent, so a restarted agent reuses the host's
credential and never registers again (a join token works once). To join the host afresh, delete
``host.json`` and start the agent with a new token.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from gpuyard.agent.gpus import logical_gpu_seed

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = Path("~/.gpuyard-agent")
HOST_FILE = "host.json"
LOCK_FILE = "agent.lock"


class StateError(Exception):
    """The state dir cannot be used as it is; the message says what to do."""


class Registration(BaseModel):
    """What registering gave this host; the credential is a secret."""

    model_config = ConfigDict(frozen=True)

    server_url: str
    host_id: str
    credential: str
    registered_at: datetime | None = None


class AgentState:
    """One agent's state dir. ``open()`` makes it (mode 0700) and tightens a looser mode."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def open(cls, root: Path) -> AgentState:
        root = root.expanduser().absolute()
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            mode = stat.S_IMODE(root.stat().st_mode)
            if mode & 0o077:
                log.info("tightening %s from %o to 700", root, mode)
                root.chmod(0o700)
        except OSError as exc:
            raise StateError(f"cannot use state dir {root}: {exc.strerror or exc}") from exc
        return cls(root)

    @property
    def host_path(self) -> Path:
        return self.root / HOST_FILE

    @property
    def runtime_dir(self) -> Path:
        """What runtimes get as their ``state_dir`` (they keep ``workloads/`` under it)."""
        return self.root

    def load_registration(self) -> Registration | None:
        try:
            raw = self.host_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read {self.host_path}: {exc.strerror or exc}") from exc
        try:
            return Registration.model_validate_json(raw)
        except ValidationError as exc:
            raise StateError(
                f"{self.host_path} is damaged ({exc.errors()[0]['msg']}); delete it and join "
                "the host again with a new join token"
            ) from exc

    def save_registration(self, registration: Registration) -> None:
        """Write ``host.json`` atomically, readable by its owner only."""
        tmp = self.host_path.with_name(HOST_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(registration.model_dump_json(indent=2) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.host_path)

    def gpu_seed(self) -> str:
        return logical_gpu_seed(self.root)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the state dir for this process: two agents on one dir would fight over workloads."""
        path = self.root / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise StateError(
                    f"another gpuyard agent (pid {holder}) is using {self.root}; stop it or "
                    "give this one another --state-dir"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock
