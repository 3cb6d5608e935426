"""A lean HTTP/1.1 client: the gateway's hop to its replicas and the webhook dispatcher's POSTs.

httpx cost more CPU on these paths than the rest of the work together (its pool scans every pooled
connection, with a ``poll()`` each, per request: about 1 ms of CPU a request against 0.03-0.06 ms
here); this client does only what they need:

- one ``asyncio.Protocol`` per connection (``_Connection``), answers parsed by httptools (llhttp,
  as uvicorn parses requests); a request is one ``transport.write``;
- per origin (scheme, host, port, and the address connected to when the caller names one) a
  LIFO stack of idle keep-alive connections, at most ``max_idle``; those idle longer than
  ``keepalive_expiry`` are closed (checked when one is taken, and by one sweep timer), and one the
  server closes is dropped as it goes (``connection_lost``): nothing is polled;
- ``https://`` over the TLS context given (the certificate checked against the URL's host), and
  ``connect_to``: an address to connect to instead of resolving the host again (a caller that
  checked where a name resolves sends to that very address: no DNS rebinding in between);
- the body handed on as it arrives (answer.py).

Errors, all ``HttpError``, named as httpx names them (the names reach request logs):

- ``ConnectError``, ``ConnectTimeout`` (a ``ConnectError``): no connection (nor TLS handshake),
  nothing was sent, so the request may go to another replica;
- ``ReadTimeout``: no byte for ``read_timeout`` while waiting for the answer;
- ``RemoteProtocolError``: the server closed the connection before its answer ended, or sent
  something that is not HTTP; ``ReadError``: the connection failed (reset);
- ``LocalProtocolError``: a request that cannot be written (CR or LF in its head, a scheme other
  than http and https, https without a TLS context).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Sequence
from typing import cast
from urllib.parse import urlsplit

import httptools

from gpuyard.http1.answer import (
    HttpError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    Response,
)

__all__ = [
    "ConnectError",
    "ConnectTimeout",
    "HttpClient",
    "HttpError",
    "LocalProtocolError",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "Response",
]

CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 600.0
KEEPALIVE_EXPIRY_S = 4.0  # under uvicorn's 5 s, so that we, not the server, close idle ones
MAX_IDLE = 64  # idle connections kept per origin
HIGH_WATER = 1 << 18  # unread body bytes above which a connection stops reading
_NO_BODY = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
_MAX_ORIGINS = 4096
_PORTS = {"http": 80, "https": 443}


class ConnectError(HttpError):
    """The connection could not be made; nothing was sent."""


class ConnectTimeout(ConnectError):
    """The connection was not made within the connect timeout; nothing was sent."""


class LocalProtocolError(HttpError):
    """The request cannot be written as HTTP/1.1."""


# scheme, host, port, the address connected to ("" for the host itself)
Key = tuple[str, str, int, str]


class _Connection(asyncio.Protocol):
    """One connection to a server, serving one exchange at a time (``response``)."""

    def __init__(self, pool: _Pool, key: Key) -> None:
        self.pool = pool
        self.key = key
        self.transport = cast(asyncio.Transport, None)  # set by connection_made, before use
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.idle_since = 0.0
        self.pooled = False  # in the pool's idle stack
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.pooled:
                self.pool.forget(self)
            self.transport.close()

    def release(self) -> None:
        """The exchange ended with the connection reusable: back to the pool."""
        self.response = None
        self.pool.release(self)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            response = self.response
            self.response = None
            self.close()
            if response is not None:
                response.failed(RemoteProtocolError(f"not an HTTP answer ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.pooled:
            self.pool.forget(self)
        response, self.response = self.response, None
        if response is not None:
            response.lost(exc)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.response is None or self.response.complete:
            raise RemoteProtocolError("the server sent bytes nobody asked for")
        self.response.begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            self.response.header(name, value)

    def on_headers_complete(self) -> None:
        if self.response is not None:
            self.response.headers_complete(
                self.parser.get_status_code(), self.parser.should_keep_alive()
            )

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response.body(body)

    def on_message_complete(self) -> None:
        if self.response is not None:
            self.response.message_complete()


class _Pool:
    """Idle keep-alive connections, a LIFO stack per origin: the warmest is reused, and the oldest
    sit at the bottom, where expiry takes them."""

    def __init__(self, *, max_idle: int, expiry: float) -> None:
        self.max_idle = max_idle
        self.expiry = expiry
        self.closed = False
        self._idle: dict[Key, deque[_Connection]] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    def take(self, key: Key, now: float) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            conn.pooled = False
            if now - conn.idle_since >= self.expiry:
                conn.close()  # the freshest has expired, so have all below it
                while idle:
                    stale = idle.pop()
                    stale.pooled = False
                    stale.close()
                return None
            if not conn.transport.is_closing():
                return conn
            conn.close()  # closing, its connection_lost still to come
        return None

    def release(self, conn: _Connection) -> None:
        if self.closed or conn.closed:
            conn.close()
            return
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = deque()
        if len(idle) >= self.max_idle:
            oldest = idle.popleft()
            oldest.pooled = False
            oldest.close()
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        conn.pooled = True
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.expiry, self._sweep)

    def forget(self, conn: _Connection) -> None:
        """A pooled connection closed (by the server, or by us): never hand it out."""
        conn.pooled = False
        with contextlib.suppress(KeyError, ValueError):
            self._idle[conn.key].remove(conn)

    def count(self, key: Key) -> int:
        return len(self._idle.get(key, ()))

    def _sweep(self) -> None:
        self._sweeper = None
        cutoff = asyncio.get_running_loop().time() - self.expiry
        for key, idle in list(self._idle.items()):
            while idle and idle[0].idle_since <= cutoff:
                stale = idle.popleft()
                stale.pooled = False
                stale.close()
            if not idle:
                del self._idle[key]
        if self._idle:
            self._sweeper = asyncio.get_running_loop().call_later(self.expiry, self._sweep)

    def close(self) -> None:
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            while idle:
                conn = idle.pop()
                conn.pooled = False
                conn.close()
        self._idle.clear()


class HttpClient:
    """Sends requests to ``http://`` and ``https://`` origins over pooled keep-alive connections.

    ``request`` returns once the answer's status and headers are in; its body is then read with
    ``Response.read()``, and ``Response.close()`` ends the exchange: a connection whose answer
    was read to its end goes back to the pool (unless the server said ``Connection: close``),
    any other is closed, so the server sees its request end."""

    def __init__(
        self,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        read_timeout: float = READ_TIMEOUT_S,
        keepalive_expiry: float = KEEPALIVE_EXPIRY_S,
        max_idle: int = MAX_IDLE,
        high_water: int = HIGH_WATER,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.tls = tls
        self.read_timeout = read_timeout
        self.high_water = high_water
        self._pool = _Pool(max_idle=max_idle, expiry=keepalive_expiry)
        self._origins: dict[str, tuple[str, str, int, str]] = {}

    async def request(
        self,
        url: str,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        *,
        connect_to: str | None = None,
        resend_if_stale: bool = False,
    ) -> Response:
        """Send ``method path`` to the origin of ``url``; its answer once its head is in.
        ``connect_to``: the address to connect to (the host is still the one named, for the
        ``host`` header and the TLS certificate). ``resend_if_stale``: a kept connection that the
        server closed as the request went out, before any of an answer came, is a race with its
        idle timeout, not an answer: send once more on a new connection (for a sender that
        delivers at least once; the server may have seen the request)."""
        scheme, host, port, netloc = self._origin(url)
        head = request_head(method, path, netloc, headers, body)
        loop = asyncio.get_running_loop()
        key = (scheme, host, port, connect_to or "")
        kept = self._pool.take(key, loop.time())
        message = head + body if body else head
        head_only = method == "HEAD"
        response = self._send(loop, kept or await self._connect(loop, key), message, head_only)
        try:
            await _started(response)
        except (RemoteProtocolError, ReadError):
            if kept is None or not resend_if_stale or response.answered:
                raise
            response = self._send(loop, await self._connect(loop, key), message, head_only)
            await _started(response)
        return response

    def _send(
        self, loop: asyncio.AbstractEventLoop, conn: _Connection, message: bytes, head_only: bool
    ) -> Response:
        response = Response(
            conn,
            loop,
            read_timeout=self.read_timeout,
            high_water=self.high_water,
            head_only=head_only,
        )
        conn.response = response
        conn.transport.write(message)
        return response

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their answers end."""
        self._pool.close()

    def idle(self, url: str, *, connect_to: str | None = None) -> int:
        """Idle connections pooled for the origin of ``url`` (tests, metrics)."""
        scheme, host, port, _ = self._origin(url)
        return self._pool.count((scheme, host, port, connect_to or ""))

    async def _connect(self, loop: asyncio.AbstractEventLoop, key: Key) -> _Connection:
        scheme, host, port, address = key
        tls = None
        if scheme == "https":
            if self.tls is None:
                raise LocalProtocolError("an https:// URL, and this client has no TLS context")
            tls = self.tls
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._pool, key),
                    address or host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
        except TimeoutError as exc:
            raise ConnectTimeout(f"no connection to {host}:{port} within the timeout") from exc
        except (OSError, ssl.SSLError) as exc:  # ssl.CertificateError is an SSLError
            raise ConnectError(f"no connection to {host}:{port}: {exc}") from exc
        return conn

    def _origin(self, url: str) -> tuple[str, str, int, str]:
        origin = self._origins.get(url)
        if origin is None:
            try:
                parts = urlsplit(url)
                port = parts.port
            except ValueError as exc:
                raise LocalProtocolError(f"not a valid URL: {url!r}") from exc
            if parts.scheme not in _PORTS or not parts.hostname:
                raise LocalProtocolError(f"not an http:// or https:// URL: {url!r}")
            host, netloc = parts.hostname, parts.netloc.rpartition("@")[2]  # no credentials
            if not netloc.isascii():  # an internationalised name: its ASCII form on the wire
                try:
                    host = host.encode("idna").decode("ascii")
                except UnicodeError as exc:
                    raise LocalProtocolError(f"not a valid host name: {url!r}") from exc
                netloc = host if port is None else f"{host}:{port}"
            origin = (parts.scheme, host, port or _PORTS[parts.scheme], netloc)
            if len(self._origins) >= _MAX_ORIGINS:
                self._origins.clear()
            self._origins[url] = origin
        return origin


async def _started(response: Response) -> None:
    """Wait for the answer's head; a failed one closes its connection."""
    try:
        await response.started()
    except BaseException:
        response.close()
        raise


def request_head(
    method: str, path: str, netloc: str, headers: Sequence[tuple[bytes, bytes]], body: bytes
) -> bytes:
    """The request line and headers (``headers`` as raw pairs, as ASGI gives them); a CR or LF
    inside any of them is refused (smuggling)."""
    try:
        parts = [f"{method} {path} HTTP/1.1\r\nhost: {netloc}\r\n".encode("latin-1")]
    except UnicodeEncodeError as exc:
        raise LocalProtocolError("a request line that is not latin-1") from exc
    breaks = 2  # the request line's and the host's
    if body or method not in _NO_BODY:
        parts.append(b"content-length: %d\r\n" % len(body))
        breaks += 1
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    breaks += len(headers) + 1
    if head.count(b"\n") != breaks or head.count(b"\r") != breaks:
        raise LocalProtocolError("a CR or LF inside the request line or a header")
    return head
