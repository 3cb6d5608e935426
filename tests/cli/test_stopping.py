"""``cli/stopping.py`` in a fresh interpreter: a stop signal during start-up is remembered even
where Python swallows the ``KeyboardInterrupt`` it raised (in a finaliser), so the start still
stops."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os, signal, weakref
    from gpuyard.cli.stopping import interrupted, take_stop_signals

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job inherits it
    take_stop_signals()
    print("before:", interrupted())

    class Thing:
        pass

    thing = Thing()
    weakref.finalize(thing, lambda: os.kill(os.getpid(), signal.SIGINT) or len("x"))
    del thing  # the handler runs inside the finaliser: Python prints the exception, goes on
    print("after:", interrupted() == signal.SIGINT)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(10))
    except KeyboardInterrupt:
        print("SIGTERM raised KeyboardInterrupt")
    """
)


def test_a_swallowed_interrupt_is_still_remembered() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "before: None",
        "after: True",
        "SIGTERM raised KeyboardInterrupt",
    ], done.stdout + done.stderr
    assert "KeyboardInterrupt" in done.stderr  # what Python printed instead of raising
