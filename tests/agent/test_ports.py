import socket

import pytest

from gpuyard.agent.ports import NoFreePort, PortAllocator, port_is_free
from gpuyard.core.hosts import PortRange


def test_parse_and_validate() -> None:
    r = PortRange.parse("40000-40999")
    assert (r.start, r.end, len(r), str(r)) == (40000, 40999, 1000, "40000-40999")
    assert 40000 in r and 40999 in r and 41000 not in r
    assert PortRange.parse("40000") == PortRange(start=40000, end=40000)
    for bad in ["", "a-b", "40999-40000", "0-10", "1-70000"]:
        with pytest.raises(ValueError, match="port range"):
            PortRange.parse(bad)


def test_allocator_skips_ports_in_use_and_taken(port_range: PortRange) -> None:
    with socket.socket() as busy:
        try:
            busy.bind(("127.0.0.1", port_range.start))
            busy.listen()
        except OSError:  # another process of the test run holds it: busy all the same
            pass
        assert not port_is_free(port_range.start)
        alloc = PortAllocator(port_range)
        first = alloc.allocate(taken={port_range.start + 1})
        assert first == port_range.start + 2
        assert alloc.allocate() == port_range.start + 3  # round-robin: no reuse at once


def test_allocator_wraps_and_runs_out() -> None:
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    alloc = PortAllocator(PortRange(start=port, end=port))
    assert alloc.allocate() == port
    assert alloc.allocate() == port  # wraps to the start again
    with pytest.raises(NoFreePort, match=f"no free port in {port}-{port}"):
        alloc.allocate(taken={port})
