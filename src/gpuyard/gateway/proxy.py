"""Forwarding one request to a replica.

``open_upstream`` tries replicas best first (least outstanding requests); a connection that
cannot be made moves on to the next one, so a dead replica costs a retry, never an error, as long
as any other answers. Once a replica has accepted the request, its answer is ours: the first chunk
is read before we answer, so an upstream error still becomes a real HTTP status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import httpx

from gpuyard.core.errors import Unavailable
from gpuyard.gateway.balancer import LeastOutstanding
from gpuyard.gateway.directory import Target

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


@dataclass
class Upstream:
    """An answer being received from one replica; ``close()`` releases it (and its slot)."""

    target: Target
    response: httpx.Response
    first: bytes
    rest: AsyncIterator[bytes]
    balancer: LeastOutstanding
    tried: list[str] = field(default_factory=list)
    _closed: bool = False

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.first:
            yield self.first
        async for chunk in self.rest:
            yield chunk

    async def read_all(self) -> bytes:
        parts = [c async for c in self.chunks()]
        return b"".join(parts)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.balancer.release(self.target.replica_id)
            await self.response.aclose()


def forward_headers(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    return {k: v for k, v in headers if k.lower() not in HOP_HEADERS}


async def open_upstream(
    *,
    client: httpx.AsyncClient,
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
        request = client.build_request(method, target.url + path, content=body, headers=headers)
        try:
            response = await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            balancer.release(target.replica_id)
            continue
        except BaseException:
            balancer.release(target.replica_id)
            raise
        rest = response.aiter_raw()
        try:
            first = await anext(rest, b"")
        except httpx.HTTPError:
            first = b""
        return Upstream(target, response, first, rest, balancer, tried)
    raise Unavailable(
        f"no replica could be reached (tried {len(tried)}); retry shortly",
        retry_after=RETRY_AFTER_S,
        code="no_replica_reachable",
    )
