"""The gateway stands on its four ports alone: with in-memory ones (no database, no server) it
routes to a real replica on loopback, answers, and hands its log row, its admission and its
token usage to the ports it was given."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from gpuyard.core.clock import ManualClock
from gpuyard.core.errors import GpuyardError, RateLimited, Unauthenticated
from gpuyard.core.principal import Principal, Scope
from gpuyard.gateway.ports import ReadyReplica, RequestLogRow, Routable, RoutableCluster
from gpuyard.gateway.service import Gateway

KEY = "vl_" + "k" * 43
PRINCIPAL = Principal(
    key_id="key_1",
    org_id="org_1",
    scopes=frozenset({Scope.INFERENCE}),
    secret_hash="h",
    tpm_limit=1_000,
)


@dataclass
class Ports:
    port: int
    loads: int = 0
    rows: list[RequestLogRow] = field(default_factory=list)
    admitted: list[str] = field(default_factory=list)
    tokens: list[tuple[str, int]] = field(default_factory=list)
    full: bool = False

    async def load(self) -> Routable:
        self.loads += 1
        cluster = RoutableCluster("cl_1", "org_1", "one", False, ("tiny",), 0.0)
        replica = ReadyReplica("wl_1", "cl_1", f"http://127.0.0.1:{self.port}", ())
        return Routable([cluster], [replica])

    async def principal(self, secret: str | None) -> Principal:
        if secret != KEY:
            raise Unauthenticated("invalid API key", code="invalid_api_key")
        return PRINCIPAL

    async def write(self, rows: Sequence[RequestLogRow]) -> None:
        self.rows.extend(rows)

    async def admit(self, principal: Principal) -> None:
        if self.full:
            raise RateLimited("rate limit reached", retry_after=30, code="rate_limit_tokens")
        self.admitted.append(principal.key_id)

    async def add_tokens(self, key_id: str, tokens: int) -> None:
        self.tokens.append((key_id, tokens))


@asynccontextmanager
async def gateway(ports: Ports) -> AsyncIterator[Gateway]:
    gw = Gateway(
        ManualClock(), replicas=ports, keys=ports, logs=ports, limiter=ports, after_answer=0
    )
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


CHAT = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}).encode()


async def test_a_gateway_on_in_memory_ports_answers_and_reports_to_them(upstream_port: int) -> None:
    ports = Ports(upstream_port)
    async with gateway(ports) as gw:
        principal = await gw.auth.principal(KEY)
        relay = await gw.call(principal, "chat/completions", CHAT, [])
        assert relay.status == 200 and relay.body is not None
        answer = json.loads(relay.body)
        assert answer["choices"][0]["message"]["content"] == "Hello from the fake model"
        await gw.settle()
    assert ports.loads == 1
    assert ports.admitted == ["key_1"]  # the key has a token limit: admitted through the port
    [row] = ports.rows  # written by stop(), through the sink
    assert (row.org_id, row.key_id, row.model, row.cluster_id, row.replica_id, row.status) == (
        "org_1",
        "key_1",
        "tiny",
        "cl_1",
        "wl_1",
        200,
    )
    usage = answer["usage"]
    assert (row.prompt_tokens, row.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert ports.tokens == [("key_1", usage["prompt_tokens"] + usage["completion_tokens"])]


async def test_refusals_of_the_ports_are_the_gateway_s(upstream_port: int) -> None:
    ports = Ports(upstream_port, full=True)
    async with gateway(ports) as gw:
        with pytest.raises(Unauthenticated):
            await gw.auth.principal("vl_" + "x" * 43)
        principal = await gw.auth.principal(KEY)
        with pytest.raises(RateLimited):
            await gw.call(principal, "chat/completions", CHAT, [])
        with pytest.raises(GpuyardError) as unknown:
            await gw.call(principal, "chat/completions", CHAT.replace(b"tiny", b"huge"), [])
        assert unknown.value.code == "model_not_found"
    assert ports.rows == [] and ports.tokens == []  # nothing reached a replica
