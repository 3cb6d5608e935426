"""Forwarding one request to a replica.

``open_upstream`` tries replicas best first (least outstanding requests); a connection that
cannot be made moves on to the next one, so a dead replica costs a retry, never an error, as long
as any other answers; when none can be reached, ``Unavailable`` (503 with ``Retry-After``). Once a
replica has accepted the request, its answer is ours, and not retried elsewhere (the request may
have had effects): the first chunk is read before we answer, so a replica that fails before it
(``UpstreamFailed``) still becomes a real HTTP status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

from gpuyard.core.errors import Unavailable
from gpuyard.gateway.balancer import LeastOutstanding
from gpuyard.gateway.directory import Target
from gpuyard.http1.client import ConnectError, HttpClient, HttpError, Response

HOP_HEADERS = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"authorization",
        b"accept-encoding",
    }
)
_HOP_AND_TYPE = HOP_HEADERS | {b"content-type"}
RETRY_AFTER_S = 5.0


class UpstreamFailed(Exception):
    """A replica accepted the request and then failed before the first chunk of its answer."""

    def __init__(self, target: Target, reason: str) -> None:
        super().__init__(reason)
        self.target = target
        self.reason = reason


@dataclass
class Upstream:
    """An answer being received from one replica; ``close()`` releases it (and its slot)."""

    target: Target
    response: Response
    first: bytes
    balancer: LeastOutstanding
    tried: list[str] = field(default_factory=list)
    _closed: bool = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: each piece is what one read of the connection brought."""
        if self.first:
            yield self.first
        while chunk := await self.response.read():
            yield chunk

    async def read_all(self) -> bytes:
        parts = [c async for c in self.chunks()]
        return b"".join(parts)

    async def close(self) -> None:
        """Release the replica; an answer not read to its end closes its connection, so the
        replica sees the request end. Never suspends, so a cancelled request still closes it."""
        if not self._closed:
            self._closed = True
            self.balancer.release(self.target.replica_id, self.target.cluster_id)
            self.response.close()


def forward_headers(
    headers: Iterable[tuple[bytes, bytes]], *, content_type: bytes | None = None
) -> list[tuple[bytes, bytes]]:
    """The client's headers that a replica gets, as the server received them (ASGI's raw
    pairs): not the hop-by-hop ones, nor its key; with ``content_type``, that one instead of
    the client's."""
    dropped = HOP_HEADERS if content_type is None else _HOP_AND_TYPE
    kept = [(k, v) for k, v in headers if k.lower() not in dropped]
    if content_type is not None:
        kept.append((b"content-type", content_type))
    return kept


async def open_upstream(
    *,
    client: HttpClient,
    balancer: LeastOutstanding,
    targets: Sequence[Target],
    method: str,
    path: str,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
) -> Upstream:
    tried: list[str] = []
    for target in balancer.order(targets):
        tried.append(target.replica_id)
        balancer.acquire(target.replica_id, target.cluster_id)
        try:
            response, first = await _first_chunk(client, target, method, path, headers, body)
        except ConnectError:  # ConnectTimeout too: nothing was sent, so try the next replica
            balancer.release(target.replica_id, target.cluster_id)
            continue
        except BaseException:
            balancer.release(target.replica_id, target.cluster_id)
            raise
        return Upstream(target, response, first, balancer, tried)
    raise Unavailable(
        f"no replica could be reached (tried {len(tried)}); retry shortly",
        retry_after=RETRY_AFTER_S,
        code="no_replica_reachable",
    )


async def _first_chunk(
    client: HttpClient,
    target: Target,
    method: str,
    path: str,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
) -> tuple[Response, bytes]:
    try:
        response = await client.request(target.url, method, path, headers, body)
    except ConnectError:
        raise
    except HttpError as exc:
        raise UpstreamFailed(target, _failed("before answering", exc)) from exc
    try:
        first = await response.read()
    except BaseException as exc:
        response.close()
        if isinstance(exc, HttpError):
            raise UpstreamFailed(target, _failed("before its first chunk", exc)) from exc
        raise
    return response, first


def _failed(when: str, exc: Exception) -> str:
    return f"the model server failed {when} ({type(exc).__name__})"
