"""The line protocol between the parent of ``--workers N`` (supervisor.py) and each of its API
worker processes (api_worker.py), over one Unix socket pair per worker.

A message is one line: a word, then its arguments separated by spaces. From the parent:

- ``joined``: ``gpuyard up``'s local host has joined, so ``/readyz`` may answer 200;
- ``wake KEY…``: another process committed a change for these hosts (or tables): answer those
  agents' waits, wake those controllers;
- ``stop``: drain and exit, as a first SIGTERM does; ``force``: exit at once, as a second does.

From a worker: ``ready`` (it serves) and ``wake KEY…`` (it committed a change for these hosts).

The end of the stream means the other side is gone: a worker whose parent died drains and
exits; the parent then waits for the worker's exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

JOINED = "joined"
WAKE = "wake"
STOP = "stop"
FORCE = "force"
READY = "ready"

LINE_LIMIT = 1 << 20  # a commit that changed what thousands of hosts run still fits


class Channel:
    """One end of a worker's socket pair, as lines in and out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def over(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=LINE_LIMIT)
        return cls(reader, writer)

    def send(self, word: str, *args: str) -> None:
        """Queue one message (nothing when the other side is gone)."""
        if self._writer.is_closing():
            return
        self._writer.write((" ".join((word, *args)) + "\n").encode())

    async def messages(self) -> AsyncIterator[tuple[str, list[str]]]:
        """Each message as (word, arguments), until the other side is gone."""
        while True:
            try:
                line = await self._reader.readline()
            except (ConnectionError, ValueError):  # reset, or a line past the limit
                return
            if not line:
                return
            word, *args = line.decode().split() or [""]
            yield word, args

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop already closed
            self._writer.close()
