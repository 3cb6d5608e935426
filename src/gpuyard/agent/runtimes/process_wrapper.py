"""Runs one workload command and records how it ended; the ``process`` runtime starts this.

    python -I process_wrapper.py EXIT_FILE -- ARGV...

The runtime launches this script (by path, with the standard library only, so it starts fast and
does not depend on the agent's imports) as the leader of a new session and process group. It starts
``ARGV`` in that same group, waits for it, and writes ``{"exit_code": N, "finished_at": ISO}`` to
``EXIT_FILE`` atomically before exiting with the same code. Because the file outlives both the
wrapper and the agent, an agent that restarts (and so is not the parent) still learns the exit code.

Signals: the runtime stops a workload by signalling the whole group, so the command gets SIGTERM
directly. The wrapper itself catches (and otherwise ignores) SIGTERM, SIGINT and SIGHUP so that it
outlives the command and can record its code; a SIGKILL to the group ends both, and then no file is
written (the runtime records that case itself). A command ended by signal N is recorded as 128+N,
as a shell and Docker report it. A command that cannot be executed at all is recorded as 127.

The runtime starts the wrapper with those three signals blocked, so a stop that arrives while the
interpreter is still starting is held, not lost: once its handlers are in place the wrapper
unblocks them, and if one was pending it records 128+N without starting the command at all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from types import FrameType

GUARDED_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})

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


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: process_wrapper.py EXIT_FILE -- ARGV...", file=sys.stderr)
        return 2
    exit_file, command = argv[0], argv[2:]
    for signum in GUARDED_SIGNALS:
        signal.signal(signum, _note)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, GUARDED_SIGNALS)  # pending ones run _note now
    if _received:
        code = 128 + _received[0]
        print(
            f"gpuyard: stopped (signal {_received[0]}) before the command started", file=sys.stderr
        )
        _write_exit(exit_file, code)
        return code
    try:
        child = subprocess.Popen(command)
    except OSError as exc:
        print(f"gpuyard: cannot run {command[0]!r}: {exc}", file=sys.stderr, flush=True)
        code = 127
    else:
        returncode = child.wait()
        code = 128 - returncode if returncode < 0 else returncode
    _write_exit(exit_file, code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
