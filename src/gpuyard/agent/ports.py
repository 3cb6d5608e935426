"""The host port range an agent hands out to workloads, and finding a free port in it.

A port is free when nothing we track holds it *and* a test socket can bind it on every address
(``0.0.0.0``, no ``SO_REUSEADDR``), so a port some other program listens on is never handed out.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from gpuyard.core.hosts import PortRange

DEFAULT_PORT_RANGE = PortRange(start=40000, end=40999)
"""The host ports an agent hands out unless told others (``gpuyard agent --port-range``)."""


class NoFreePort(RuntimeError):
    """Every port of the range is taken."""


def port_is_free(port: int) -> bool:
    """True when a TCP socket can bind ``port`` on all addresses right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


class PortAllocator:
    """Hands out ports round-robin from a range, skipping ports in use.

    Round-robin (rather than lowest-free) keeps a just-released port from being handed to the next
    workload at once, while clients may still hold the old address.
    """

    def __init__(self, port_range: PortRange) -> None:
        self.port_range = port_range
        self._cursor = port_range.start

    def allocate(self, taken: Iterable[int] = ()) -> int:
        held = set(taken)
        size = len(self.port_range)
        for step in range(size):
            port = self.port_range.start + (self._cursor - self.port_range.start + step) % size
            if port in held or not port_is_free(port):
                continue
            self._cursor = port + 1 if port < self.port_range.end else self.port_range.start
            return port
        raise NoFreePort(f"no free port in {self.port_range}")
