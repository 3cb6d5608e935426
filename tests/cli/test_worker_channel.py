"""The parent-worker channel of ``--workers N`` over a real socket pair: messages in order, and
the end of the stream when the other side is gone."""

from __future__ import annotations

import socket

from gpuyard.cli.worker_channel import JOINED, STOP, WAKE, Channel


async def test_messages_arrive_in_order_and_end_when_the_other_side_is_gone() -> None:
    ours, theirs = socket.socketpair()
    parent, worker = await Channel.over(ours), await Channel.over(theirs)
    parent.send(JOINED)
    parent.send(WAKE, "host:host_a", "host:host_b")
    parent.send(STOP)
    parent.close()

    got = [message async for message in worker.messages()]

    assert got == [(JOINED, []), (WAKE, ["host:host_a", "host:host_b"]), (STOP, [])]
    worker.send(WAKE, "host:host_c")  # to a parent that is gone: raises nothing
    worker.close()
