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
from gpuyard.gateway.upstream_http import ConnectError, HttpError, Response, UpstreamClient

HOP_HEADERS = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "authorization",
        "accept-encoding",
    }
)
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
            self.balancer.release(self.target.replica_id)
            self.response.close()


def forward_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k: v for k, v in headers if k.lower() not in HOP_HEADERS}


async def open_upstream(
    *,
    client: UpstreamClient,
    balancer: LeastOutstanding,
    targets: Sequence[Target],
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
) -> Upstream:
    tried: list[str] = []
    for target in balancer.order(targets):
        tried.append(target.replica_id)
        balancer.acquire(target.replica_id)
        try:
            response, first = await _first_chunk(client, target, method, path, headers, body)
        except ConnectError:  # ConnectTimeout too: nothing was sent, so try the next replica
            balancer.release(target.replica_id)
            continue
        except BaseException:
            balancer.release(target.replica_id)
            raise
        return Upstream(target, response, first, balancer, tried)
    raise Unavailable(
        f"no replica could be reached (tried {len(tried)}); retry shortly",
        retry_after=RETRY_AFTER_S,
        code="no_replica_reachable",
    )


async def _first_chunk(
    client: UpstreamClient,
    target: Target,
    method: str,
    path: str,
    headers: dict[str, str],
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
