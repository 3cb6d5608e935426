"""The inference gateway: route a request to a ready replica and relay its answer.

``Gateway.call`` serves the OpenAI endpoints (``model`` picks the replicas, or else the workers of
the org's serverless endpoint of that name, serverless.py); ``Gateway.forward``
serves a cluster's own endpoint (every path, to that cluster's replicas). Both return a ``Relay``:
a complete answer or an open stream that the HTTP layer sends on (relay.py). Both enforce the
key's rate limits, and both leave one request-log row per request once it ends, with the usage
the upstream reported (or, for a stream cut short, the tokens counted).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Sequence
from functools import partial
from typing import Any

from gpuyard.core.clock import Clock
from gpuyard.core.errors import NotFound, Unavailable
from gpuyard.core.principal import Principal
from gpuyard.gateway import bodies
from gpuyard.gateway.after_answer import AFTER_ANSWER_S, AfterAnswer
from gpuyard.gateway.auth import PrincipalCache
from gpuyard.gateway.balancer import LeastOutstanding
from gpuyard.gateway.directory import ModelDirectory, Target
from gpuyard.gateway.kept import CompletionKeeper
from gpuyard.gateway.load_meter import LoadMeter
from gpuyard.gateway.log_entry import CLIENT_CLOSED, MAX_ENDPOINT, LogEntry
from gpuyard.gateway.logs import RequestLogWriter
from gpuyard.gateway.ports import (
    CompletionSink,
    FreeSpend,
    Keys,
    Limiter,
    LoadSink,
    LogSink,
    ReplicaSource,
    RequestLogRow,
    ServerlessRouter,
    Spend,
    WorkerGrant,
)
from gpuyard.gateway.proxy import RETRY_AFTER_S, UpstreamFailed, forward_headers, open_upstream
from gpuyard.gateway.relay import (
    CLIENT_GONE,
    SSE,
    Relay,
    StreamEnd,
    bad_gateway,
    is_event_stream,
    passed_on_headers,
    read_answer,
    relay_bytes,
    relay_events,
)
from gpuyard.gateway.serverless import (
    DEFAULT_WAIT_S,
    Elsewhere,
    ServerlessWaiter,
    cost_of,
    worker_body,
    worker_target,
)
from gpuyard.gateway.usage import Counted, Usage
from gpuyard.http1.client import HttpClient

log = logging.getLogger(__name__)


class Gateway:
    """The data plane over its four ports (ports.py): ``replicas`` to route to, ``keys`` to
    check, ``logs`` for the request log, ``limiter`` for the per-key limits."""

    def __init__(
        self,
        clock: Clock,
        *,
        replicas: ReplicaSource,
        keys: Keys,
        logs: LogSink,
        limiter: Limiter,
        kept: CompletionSink | None = None,
        spend: Spend | None = None,
        client: HttpClient | None = None,
        directory_ttl: float = 1.0,
        auth_ttl: float = 0.5,
        after_answer: float = AFTER_ANSWER_S,
        serverless: ServerlessRouter | None = None,
        serverless_wait_s: float = DEFAULT_WAIT_S,
        load: LoadSink | None = None,
    ) -> None:
        self.clock = clock
        self.after = AfterAnswer(after_answer)
        self.limiter = limiter
        self.kept = CompletionKeeper(kept, clock, self.later) if kept else None
        self.spend = spend or FreeSpend()
        self.directory = ModelDirectory(replicas, ttl=directory_ttl)
        self.meter = LoadMeter(load, clock)
        self.balancer = LeastOutstanding(meter=self.meter)
        self.auth = PrincipalCache(keys, ttl=auth_ttl)
        self.logs: RequestLogWriter[RequestLogRow] = RequestLogWriter(logs)
        self.client = client or HttpClient(connect_timeout=2.0, read_timeout=600.0)
        self.serverless = (
            ServerlessWaiter(serverless, wait_s=serverless_wait_s) if serverless else None
        )

    async def start(self) -> None:
        self.logs.start()
        self.meter.start()
        if self.kept is not None:
            self.kept.start()

    async def stop(self) -> None:
        await self.settle()
        await self.meter.stop()
        await self.directory.close()
        await self.auth.close()
        await self.logs.stop()
        if self.kept is not None:
            await self.kept.stop()
        await self.client.aclose()

    async def call(
        self,
        principal: Principal,
        endpoint: str,
        raw: bytes,
        headers: Iterable[tuple[bytes, bytes]],
    ) -> Relay:
        """An OpenAI request (``endpoint`` like ``chat/completions``) to a replica of ``model``."""
        request = bodies.parse(endpoint, raw)
        targets = await self.directory.resolve(principal.org_id, request.model)
        if not targets and self.serverless is not None:
            return await self._call_serverless(principal, endpoint, request, headers)
        if not targets:
            raise _model_not_found(request.model)
        await self._admit(principal)
        entry = LogEntry(principal, endpoint, request.model, request.stream)
        entry.characters = request.characters
        entry.held_cents = await self.spend.hold(
            principal, entry.id, request.model, len(raw), request.max_tokens, request.characters
        )
        relay = await self._proxy(
            entry,
            targets,
            method="POST",
            path=f"/v1/{endpoint}",
            headers=forward_headers(headers, content_type=b"application/json"),
            body=request.upstream_body,
            strip_usage=request.strip_usage,
            whole=True,
            expect_json=endpoint != "audio/speech",
        )
        if endpoint == "chat/completions" and self.kept is not None:
            self.kept.keep(principal, relay)
        return relay

    async def _call_serverless(
        self,
        principal: Principal,
        endpoint: str,
        request: bodies.InferenceRequest,
        headers: Iterable[tuple[bytes, bytes]],
    ) -> Relay:
        """The request to a worker of the org's serverless endpoint named like its model,
        held while one starts; a request that reaches no worker is abandoned (not demand)."""
        assert self.serverless is not None
        router, org_id = self.serverless.router, principal.org_id
        body = bodies.json_object(request.upstream_body)
        cost = cost_of(body)
        found = await router.route(org_id, request.model, cost=cost, request_idx=0)
        if found is None:
            raise _model_not_found(request.model)
        try:
            await self._admit(principal)
            entry = LogEntry(principal, endpoint, request.model, request.stream)
            entry.characters = request.characters
            entry.held_cents = await self.spend.hold(
                principal,
                entry.id,
                request.model,
                len(request.upstream_body),
                request.max_tokens,
                request.characters,
            )
            grant: WorkerGrant = await self.serverless.until_ready(
                org_id, request.model, cost, found
            )
            relay = await self._proxy(
                entry,
                [worker_target(org_id, grant)],
                method="POST",
                path=f"/v1/{endpoint}",
                headers=forward_headers(headers, content_type=b"application/json"),
                body=worker_body(grant, body),
                strip_usage=request.strip_usage,
                whole=True,
                expect_json=endpoint != "audio/speech",
                refused=Elsewhere(router, org_id, grant, body),
            )
            if relay.status == 429:  # refused by every worker with room: it ends here
                await router.abandon(org_id, found.request_idx)
            return relay
        except BaseException:  # refused, timed out, gone, or the worker could not be reached
            await asyncio.shield(router.abandon(org_id, found.request_idx))
            raise

    async def forward(
        self,
        principal: Principal,
        *,
        slug: str,
        method: str,
        path: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
    ) -> Relay:
        """Any request under the endpoint of cluster ``slug`` (``path`` with its query) to one
        of its replicas, passed through as it is; another org's cluster is the same 404."""
        targets = await self.directory.endpoint(principal.org_id, slug)
        if targets is None:
            raise NotFound(f"no cluster endpoint {slug}", code="endpoint_not_found")
        if not targets:
            if cluster_id := self.directory.cluster_id(slug):
                self.meter.refused(cluster_id)  # demand all the same: scale from zero
            raise Unavailable(
                f"cluster endpoint {slug} has no ready replica yet",
                retry_after=RETRY_AFTER_S,
                code="no_ready_replica",
            )
        await self._admit(principal)
        return await self._proxy(
            LogEntry(principal, path.split("?", 1)[0][:MAX_ENDPOINT], bodies.model_of(body), False),
            targets,
            method=method,
            path=path,
            headers=forward_headers(headers),
            body=body,
            strip_usage=False,
            whole=False,
            expect_json=False,
        )

    async def models(self, org_id: str) -> dict[str, float]:
        """What the org may name as ``model``, with a creation time each: its clusters' models
        and the published ones, then its serverless endpoints by name (a cluster's wins)."""
        found = await self.directory.models(org_id)
        if self.serverless is None:
            return found
        return {**await self.serverless.router.names(org_id), **found}

    async def _admit(self, principal: Principal) -> None:
        if principal.rpm_limit is not None or principal.tpm_limit is not None:
            await self.limiter.admit(principal)

    async def _proxy(
        self,
        entry: LogEntry,
        targets: Sequence[Target],
        *,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        strip_usage: bool,
        whole: bool,
        expect_json: bool,
        refused: Elsewhere | None = None,
    ) -> Relay:
        """Open the request on the best replica that answers and relay its answer: SSE checked
        event by event, else the whole body (``whole``) or its bytes as they come. A 429 is
        tried ``refused`` elsewhere first (a serverless worker's full queue)."""
        finish = partial(self._finish, entry)
        opening = partial(
            open_upstream,
            client=self.client,
            balancer=self.balancer,
            method=method,
            path=path,
            headers=headers,
        )
        try:
            upstream = await opening(targets=targets, body=body)
            while refused is not None and upstream.response.status_code == 429:
                if (elsewhere := await refused.next()) is None:
                    break  # none has room: the refusal is the answer
                await upstream.close()
                upstream = await opening(targets=[elsewhere[0]], body=elsewhere[1])
        except Unavailable as exc:
            if len({t.cluster_id for t in targets}) == 1:
                entry.cluster_id = targets[0].cluster_id
            finish(503, None, exc.message)
            raise
        except UpstreamFailed as exc:
            entry.at(exc.target)
            return bad_gateway(finish, exc.reason)
        except asyncio.CancelledError:  # the client went away before the replica answered
            finish(CLIENT_CLOSED, None, CLIENT_GONE)
            raise
        entry.at(upstream.target)
        if is_event_stream(upstream):
            entry.stream = True
            end = entry.end = StreamEnd()
            stream = relay_events(upstream, strip_usage=strip_usage, finish=finish, end=end)
            return Relay(200, dict(SSE), stream=stream, end=end)
        if whole:
            return await read_answer(upstream, expect_json=expect_json, finish=finish)
        status = upstream.response.status_code
        return Relay(
            status, passed_on_headers(upstream), stream=relay_bytes(upstream, finish=finish)
        )

    def _finish(self, entry: LogEntry, status: int, usage: Usage | None, error: str | None) -> None:
        """The request has ended: queue its log row and count its tokens against the key."""
        principal = entry.principal
        if principal.tpm_limit is not None and usage is not None:
            tokens = (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)
            if tokens:
                self.after.spawn(self._count_tokens(principal.key_id, tokens))
        if entry.held_cents and entry.model is not None:
            used_in = (usage.prompt_tokens or 0) if usage else 0
            used_out = (usage.completion_tokens or 0) if usage else 0
            spoken = entry.characters if status < 400 else 0  # speech: when it was answered
            self.after.spawn(
                self._settle(
                    entry.principal,
                    entry.id,
                    entry.model,
                    entry.held_cents,
                    Counted(used_in, used_out, spoken),
                )
            )
        self.logs.submit(entry.row(now=self.clock.now(), status=status, usage=usage, error=error))

    async def _settle(
        self,
        principal: Principal,
        request_id: str,
        model: str,
        held: int,
        used: Counted,
    ) -> None:
        try:
            await self.spend.settle(
                principal, request_id, model, held, used.input, used.output, used.characters
            )
        except Exception:
            log.exception("could not settle request %s (%d cents held)", request_id, held)

    async def _count_tokens(self, key_id: str, tokens: int) -> None:
        try:
            await self.limiter.add_tokens(key_id, tokens)
        except Exception:
            log.exception("could not count %d tokens for %s", tokens, key_id)

    def later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (what follows an answer) shortly after it has gone (``AfterAnswer``)."""
        self.after.later(work)

    async def settle(self) -> None:
        """Wait for the work that follows answers: streams closed ``later``, token counting,
        settlements (tests, shutdown)."""
        await self.after.settle()

    @property
    def after_answer(self) -> float:
        """How long what follows an answer waits before it runs."""
        return self.after.delay

    @after_answer.setter
    def after_answer(self, seconds: float) -> None:
        self.after.delay = seconds


def _model_not_found(model: str) -> NotFound:
    return NotFound(
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
        param="model",
    )
