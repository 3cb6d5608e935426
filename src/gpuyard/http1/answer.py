"""One answer from a server, as client.py's connection parses it: its status and headers,
then its body handed on as it arrives.

``Response.read()`` returns every body byte received since the last call (so one read of the
socket is one piece for the relay), ``b""`` at the end. Above ``high_water`` unread bytes the
connection stops reading until the reader catches up. The body ends at its content-length, its
last chunk, or, when it has neither, when the server closes the connection. The read timeout is
one timer per answer, re-armed only when it fires while a read still waits.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

MAX_HEAD_BYTES = 1 << 16  # header bytes an answer may send


class HttpError(Exception):
    """Anything that went wrong talking to a server."""


class ReadTimeout(HttpError):
    """No byte came for the read timeout while the answer was awaited."""


class ReadError(HttpError):
    """The connection failed while the answer was read."""


class RemoteProtocolError(HttpError):
    """The server closed the connection before its answer ended, or sent something not HTTP."""


class Link(Protocol):
    """What an answer needs of its connection."""

    transport: asyncio.Transport
    response: Response | None
    closed: bool

    def close(self) -> None: ...

    def release(self) -> None: ...


class Response:
    """The answer to one request: ``status_code`` and ``headers`` (names lower-case, repeated ones
    joined with ``", "``), then the body through ``read()``; ``close()`` ends it."""

    def __init__(
        self,
        link: Link,
        loop: asyncio.AbstractEventLoop,
        *,
        read_timeout: float,
        high_water: int,
        head_only: bool,
    ) -> None:
        self.status_code = 0
        self.headers: dict[str, str] = {}
        self.complete = False
        self._link: Link | None = link  # None once the exchange is over
        self._loop = loop
        self._read_timeout = read_timeout
        self._high_water = high_water
        self._head_only = head_only
        self._head: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._keep_alive = False
        self._until_close = False  # the body ends when the connection does
        self._started = False
        self.answered = False  # any of an answer has arrived
        self._chunks: list[bytes] = []
        self._unread = 0
        self._paused = False
        self._error: HttpError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._wait_started = 0.0
        self._timer: asyncio.TimerHandle | None = None

    async def started(self) -> None:
        """Wait for the status and headers."""
        while not self._started:
            if self._error is not None:
                raise self._error
            await self._wait()

    @property
    def ended(self) -> bool:
        """The whole body has been received and read: ``read()`` would answer ``b""`` now."""
        return self.complete and not self._chunks

    async def read(self) -> bytes:
        """The body bytes received since the last read; ``b""`` once it has ended."""
        chunks = self._chunks
        while not chunks:
            if self._error is not None:
                raise self._error
            if self.complete or self._link is None:
                return b""
            await self._wait()
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._unread = 0
        if self._paused:
            self._paused = False
            if self._link is not None:
                self._link.transport.resume_reading()
        return data

    def close(self) -> None:
        """End the exchange; a connection whose answer has not ended is closed."""
        link = self._link
        if link is not None:
            self._detach()
            link.close()
        self._chunks.clear()

    # called by the connection

    def begin(self) -> None:
        self.answered = True
        self._head.clear()  # after an informational (1xx) answer, the next one's head
        self._head_bytes = 0

    def header(self, name: bytes, value: bytes) -> None:
        self._head.append((name, value))
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise RemoteProtocolError("the answer's headers are too long")

    def headers_complete(self, status: int, keep_alive: bool) -> None:
        if 100 <= status < 200 and status != 101:
            return  # informational: the answer follows
        headers: dict[str, str] = {}
        for raw_name, raw_value in self._head:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.status_code, self.headers, self._keep_alive = status, headers, keep_alive
        self._started = True
        framed = "content-length" in headers or "chunked" in headers.get("transfer-encoding", "")
        self._until_close = not framed and status not in (204, 304) and not self._head_only
        self._wake()
        if self._head_only:
            self.complete = True
            self.close()  # no body; the parser does not know, so the connection goes

    def body(self, data: bytes) -> None:
        self._chunks.append(data)
        self._unread += len(data)
        if self._unread > self._high_water and not self._paused and self._link is not None:
            self._paused = True
            self._link.transport.pause_reading()
        self._wake()

    def message_complete(self) -> None:
        if not self._started:
            return  # the end of an informational answer
        self.complete = True
        link = self._link
        if link is None:
            return
        self._detach()
        if self._paused:
            self._paused = False
            link.transport.resume_reading()
        if self._keep_alive and not self._until_close:
            link.release()
        else:
            link.close()  # ``Connection: close``, HTTP/1.0

    def lost(self, exc: Exception | None) -> None:
        """The connection closed during the exchange."""
        if self._link is None:
            return
        if self._started and self._until_close and exc is None:
            self._detach()
            self.complete = True
        elif exc is not None:
            self.failed(ReadError(f"the connection failed: {exc}"))
        elif self._started:
            self.failed(RemoteProtocolError("the server closed the connection mid-answer"))
        else:
            self.failed(RemoteProtocolError("the server closed the connection without answering"))

    def failed(self, error: HttpError) -> None:
        self._error = error
        link = self._link
        if link is not None:
            self._detach()
            link.close()

    # waiting

    def _detach(self) -> None:
        link, self._link = self._link, None
        if link is not None and link.response is self:
            link.response = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()

    def _wait(self) -> asyncio.Future[None]:
        self._waiter = waiter = self._loop.create_future()
        self._wait_started = self._loop.time()
        if self._timer is None:
            deadline = self._wait_started + self._read_timeout
            self._timer = self._loop.call_at(deadline, self._on_timer)
        return waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _on_timer(self) -> None:
        self._timer = None
        if self._waiter is None or self._waiter.done():
            return  # nobody waits: the next wait arms it again
        deadline = self._wait_started + self._read_timeout
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._on_timer)
            return
        self.failed(ReadTimeout(f"no answer within {self._read_timeout:g} s"))
