"""Runs one workload command and records how it ended; the ``process`` runtime starts this.

    python -I process_wrapper.py EXIT_FILE

What to run is in ``launch.json`` beside ``EXIT_FILE``, which the wrapper reads and deletes:
``argv``, ``env`` and ``cwd`` of the command; ``user``, a uid to run it as (a root agent's
sandbox: the wrapper keeps only ``CAP_SETUID``/``CAP_SETGID`` for this); ``relay``, the number
of an inherited socket of the host's network and the port to relay it to inside the sandbox
(``process_relay.py``); ``server_relay``, a loopback port to listen on inside the sandbox and
the Unix socket in the run directory it relays to, the agent's way to its server. The command
line, which every user of the host can read, so names no
secret of the workload. The runtime launches this script (by path, standard library only, so it
starts fast and does not depend on the agent's imports), inside the sandbox when there is one,
as the leader of a new session and process group. It starts the command in that same group,
waits for it, and writes ``{"exit_code": N, "finished_at": ISO}`` to ``EXIT_FILE`` atomically
before exiting with the same code. Because the file outlives both the wrapper and the agent, an
agent that restarts (and so is not the parent) still learns the exit code.

Signals: the runtime stops a workload by signalling the whole group, so the command gets SIGTERM
directly. The wrapper itself catches (and otherwise ignores) SIGTERM, SIGINT and SIGHUP so that it
outlives the command and can record its code; a SIGKILL to the group ends both, and then no file is
written (the runtime records that case itself). A command ended by signal N is recorded as 128+N,
as a shell and Docker report it. A command that cannot be executed at all is recorded as 127.

The runtime starts the wrapper with those three signals blocked (bubblewrap passes the mask on),
so a stop that arrives while the interpreter is still starting is held, not lost: once its
handlers are in place the wrapper unblocks them, and if one was pending it records 128+N without
starting the command at all. In a sandbox the wrapper is not yet born when bubblewrap is, and a
signal sent to the group before then never reaches it; so the runtime also writes a ``stop``
file beside ``EXIT_FILE`` before it signals, and the wrapper, once its handlers are in place,
takes that file for a SIGTERM. A signal that comes after that check but before the command
exists is passed on to the command as soon as it does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from types import FrameType
from typing import Any

GUARDED_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
LAUNCH_FILE = "launch.json"
STOP_FILE = "stop"

_received: list[int] = []


def _note(signum: int, frame: FrameType | None) -> None:
    """A handler rather than SIG_IGN: a caught signal reverts to its default in the exec'd child."""
    _received.append(signum)


def _write_exit(path: str, code: int) -> None:
    record = {"exit_code": code, "finished_at": datetime.now(UTC).isoformat()}
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)


def _read_launch(exit_file: str) -> dict[str, Any]:
    path = os.path.join(os.path.dirname(exit_file), LAUNCH_FILE)
    with open(path) as f:
        launch: dict[str, Any] = json.load(f)
    os.unlink(path)  # the command's environment may hold secrets: keep them off the disk
    return launch


def _start_relay(relay: dict[str, int]) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import process_relay  # by path: this script runs without gpuyard on its import path

    listener = socket.socket(fileno=relay["fd"])
    thread = threading.Thread(
        target=process_relay.serve, args=(listener, relay["port"]), daemon=True
    )
    thread.start()


def _start_server_relay(relay: dict[str, Any]) -> None:
    """Listen on the sandbox's loopback now, so the port is there when the command starts."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import process_relay

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", relay["port"]))
    listener.listen(process_relay.BACKLOG)
    thread = threading.Thread(
        target=process_relay.serve_to_server,
        args=(listener, relay["run_dir"], relay["name"]),
        daemon=True,
    )
    thread.start()


def _spawn(launch: dict[str, Any]) -> subprocess.Popen[bytes]:
    user = launch.get("user")
    identity: dict[str, Any] = {}
    if user is not None:
        identity = {"user": user, "group": user, "extra_groups": []}
    return subprocess.Popen(launch["argv"], env=launch["env"], cwd=launch["cwd"], **identity)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: process_wrapper.py EXIT_FILE", file=sys.stderr)
        return 2
    exit_file = argv[0]
    launch = _read_launch(exit_file)
    if launch.get("relay"):
        _start_relay(launch["relay"])  # signals are still blocked: they go to this thread
    if launch.get("server_relay"):
        _start_server_relay(launch["server_relay"])
    for signum in GUARDED_SIGNALS:
        signal.signal(signum, _note)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, GUARDED_SIGNALS)  # pending ones run _note now
    if not _received and os.path.exists(os.path.join(os.path.dirname(exit_file), STOP_FILE)):
        _received.append(signal.SIGTERM)  # stopped before this process was there to be signalled
    if _received:
        code = 128 + _received[0]
        print(
            f"gpuyard: stopped (signal {_received[0]}) before the command started", file=sys.stderr
        )
        _write_exit(exit_file, code)
        return code
    try:
        child = _spawn(launch)
    except OSError as exc:
        print(f"gpuyard: cannot run {launch['argv'][0]!r}: {exc}", file=sys.stderr, flush=True)
        code = 127
    else:
        if _received:  # a stop came while the command was being started
            child.send_signal(_received[0])
        returncode = child.wait()
        code = 128 - returncode if returncode < 0 else returncode
    _write_exit(exit_file, code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
