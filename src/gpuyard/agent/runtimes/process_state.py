"""What the ``process`` runtime keeps on disk per workload, so a new agent process can re-adopt it.

    <state_dir>/workloads/<workload id>/     mode 0700, the agent's
        record.json   ProcessRecord: pid, process start time, port, uid, spec hash, argv, …
        output.log    the command's stdout and stderr, appended across runs
        run/          the wrapper's, mode 0700 (in the sandbox too, out of the command's reach):
            launch.json   what to run (argv, env, user, relay); the wrapper deletes it once read
            exit.json     written by the wrapper when the command ends: exit code, finish time
            stop          written by the runtime before it signals a stop (see the wrapper)
        home/         the working directory and HOME of the command (SSH keys in home/.ssh),
                      owned by the workload's own uid when it has one

A pid alone is not proof that our process still runs: pids are reused. A record is alive only when a
process with its pid exists, is not a zombie, and started at the recorded ``create_time``.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import psutil
from pydantic import BaseModel, ValidationError

from gpuyard.core.clock import parse_rfc3339

RECORD_FILE = "record.json"
EXIT_FILE = "exit.json"
LAUNCH_FILE = "launch.json"
STOP_FILE = "stop"
LOG_FILE = "output.log"
HOME_DIR = "home"
RUN_DIR = "run"

_CREATE_TIME_TOLERANCE_S = 0.05


class ProcessRecord(BaseModel):
    workload_id: str
    spec_hash: str
    argv: list[str]
    pid: int | None = None
    create_time: float | None = None
    host_port: int | None = None
    uid: int | None = None
    """The workload's own user (a root agent's sandbox); kept until the workload is removed."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    failed: str | None = None
    """Why the workload could not be started; ``None`` when it was."""
    stop_requested: bool = False
    killed: bool = False
    """The runtime sent SIGKILL after the grace period."""
    server_relay: bool = False
    """Its sandbox has the loopback port relayed to the server (``server_relay.py``)."""


class ExitRecord(BaseModel):
    exit_code: int
    finished_at: datetime


class WorkloadDir:
    def __init__(self, state_dir: Path, workload_id: str) -> None:
        self.path = state_dir / "workloads" / workload_id

    @property
    def record_path(self) -> Path:
        return self.path / RECORD_FILE

    @property
    def run(self) -> Path:
        return self.path / RUN_DIR

    @property
    def exit_path(self) -> Path:
        return self.run / EXIT_FILE

    @property
    def stop_path(self) -> Path:
        return self.run / STOP_FILE

    @property
    def launch_path(self) -> Path:
        return self.run / LAUNCH_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def home(self) -> Path:
        return self.path / HOME_DIR

    def load(self) -> ProcessRecord | None:
        try:
            return ProcessRecord.model_validate_json(self.record_path.read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError:
            return None

    def save(self, record: ProcessRecord) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_atomic(self.record_path, record.model_dump_json(indent=2))

    def read_exit(self) -> ExitRecord | None:
        try:
            raw = json.loads(self.exit_path.read_text())
            return ExitRecord(
                exit_code=int(raw["exit_code"]), finished_at=parse_rfc3339(raw["finished_at"])
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return None


def workload_ids(state_dir: Path) -> list[str]:
    root = state_dir / "workloads"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / RECORD_FILE).is_file())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def process_create_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_alive(pid: int | None, create_time: float | None) -> bool:
    """True when the process of a record still runs (and is the same process, not a reused pid)."""
    if pid is None or create_time is None:
        return False
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > _CREATE_TIME_TOLERANCE_S:
            return False
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def group_runs(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still runs (a zombie, exited but not reaped, does not).

    ``killpg(pgid, 0)`` also finds zombies: on a host whose init does not reap orphans, a
    sandbox's inner process whose parent was killed first stays one for good.
    """
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return False


def tail_file(path: Path, lines: int, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a text file (reading at most ``max_bytes`` from its end)."""
    return tail_with_size(path, lines, max_bytes)[0]


def tail_with_size(path: Path, lines: int, max_bytes: int = 64 * 1024) -> tuple[str, int]:
    """The last ``lines`` lines of a file that may still grow, and its size when read: the
    tail ends exactly there, whatever is written meanwhile. ``("", 0)`` when it is missing."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            if lines <= 0:
                return "", size
            f.seek(max(0, size - max_bytes))
            data = f.read(size - f.tell())
    except FileNotFoundError:
        return "", 0
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept).decode(errors="replace"), size
