"""OpenAI requests for a serverless endpoint: the model is the endpoint's name, in the caller's
org. A request that finds no ready worker is held while the autoscaler starts one, from zero,
polling as Vast's client does, up to ``wait_s`` (then 503 ``no_ready_worker``, and the routed
request is abandoned so it stops counting as demand). The worker gets what a Vast client sends
it: ``{"auth_data": <the /route/ grant>, "payload": <the OpenAI body>}`` on the same path.
A worker that answers 429 (its queue is full) is passed over for another ready worker with room
(``Elsewhere``); the 429 is the answer only when none has room.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from typing import Any

from gpuyard.core.errors import Unavailable
from gpuyard.gateway.directory import Target
from gpuyard.gateway.ports import ServerlessRouter, WorkerGrant, WorkerWait

DEFAULT_WAIT_S = 120.0
POLL_S = 0.5
CHARS_PER_TOKEN = 4
DEFAULT_OUTPUT_TOKENS = 16


def cost_of(body: dict[str, Any]) -> float:
    """A request's cost in the endpoint's perf units, taken as tokens: the body's characters over
    four (the prompt, roughly) plus the output it may ask for (``max_tokens``)."""
    wanted = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_OUTPUT_TOKENS
    if not isinstance(wanted, int | float) or not math.isfinite(wanted) or wanted < 0:
        wanted = DEFAULT_OUTPUT_TOKENS
    return float(max(1, len(json.dumps(body)) // CHARS_PER_TOKEN + int(wanted)))


def worker_body(grant: WorkerGrant, body: dict[str, Any]) -> bytes:
    return json.dumps({"auth_data": grant.auth_data, "payload": body}).encode()


def worker_target(org_id: str, grant: WorkerGrant) -> Target:
    """The worker as the balancer and the request log see it: the endpoint in the cluster's
    column, the worker's number as the replica."""
    return Target(
        replica_id=f"worker-{grant.endpoint_id}-{grant.worker_id}",
        cluster_id=grant.endpoint_id,
        org_id=org_id,
        public=False,
        url=grant.url,
    )


MAX_REROUTES = 8
"""The most workers one request is offered to after the first refused it."""


class Elsewhere:
    """Where a request goes when the worker it was sent to refuses it (429): another ready
    worker of the endpoint with room for it, routed as ``/route/`` routes (None: none has)."""

    def __init__(
        self, router: ServerlessRouter, org_id: str, grant: WorkerGrant, body: dict[str, Any]
    ) -> None:
        self.router = router
        self.org_id = org_id
        self.body = body
        self.request_idx = grant.request_idx
        self.refused: tuple[int, ...] = (grant.worker_id,)

    async def next(self) -> tuple[Target, bytes] | None:
        """The next worker and what it is sent; each call means the last one refused."""
        if len(self.refused) > MAX_REROUTES:
            return None
        grant = await self.router.reroute(self.org_id, self.request_idx, self.refused)
        if grant is None:
            return None
        self.refused += (grant.worker_id,)
        return worker_target(self.org_id, grant), worker_body(grant, self.body)


class ServerlessWaiter:
    def __init__(
        self,
        router: ServerlessRouter,
        *,
        wait_s: float = DEFAULT_WAIT_S,
        poll_s: float = POLL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.router = router
        self.wait_s = wait_s
        self._poll_s = poll_s
        self._monotonic = monotonic

    async def until_ready(
        self, org_id: str, name: str, cost: float, found: WorkerGrant | WorkerWait
    ) -> WorkerGrant:
        """The worker ``found`` names, or once one is ready; ``Unavailable`` past ``wait_s``.
        The caller abandons the request when this does not return a worker."""
        deadline = self._monotonic() + self.wait_s
        while isinstance(found, WorkerWait):
            if self._monotonic() >= deadline:
                raise Unavailable(
                    f"no worker of endpoint {name} became ready within {self.wait_s:g} s",
                    retry_after=self._poll_s * 10,
                    code="no_ready_worker",
                )
            await asyncio.sleep(self._poll_s)
            again = await self.router.route(org_id, name, cost=cost, request_idx=found.request_idx)
            if again is None:  # the endpoint was deleted meanwhile
                raise Unavailable(f"endpoint {name} was deleted", code="no_ready_worker")
            found = again
        return found
