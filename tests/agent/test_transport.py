"""``HttpTransport``: the wire calls, and how every failure maps to retry or give up."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from gpuyard.agent.transport import (
    AgentRejected,
    HttpTransport,
    ServerUnavailable,
    normalize_server_url,
)
from gpuyard.core.agent_protocol import (
    Desired,
    HeartbeatRequest,
    HostStatus,
    RegisterRequest,
)
from gpuyard.core.hosts import PortRange
from gpuyard.core.workload import WorkloadSpec, WorkloadState, WorkloadStatus

from .fake_server import FakeServer, agent_api, serve
from .supervisor_kit import facts

FACTS = facts(PortRange(start=40000, end=40999))
REGISTER = RegisterRequest(token="gyj_test", name="rig", facts=FACTS)
HEARTBEAT = HeartbeatRequest(
    facts=FACTS, workloads=[WorkloadStatus(id="wl_1", state=WorkloadState.RUNNING)]
)


def mocked(handler: Callable[[httpx.Request], httpx.Response]) -> HttpTransport:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return HttpTransport("http://gpuyard.test/", client)


def envelope(status: int, message: str, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": message, "code": code}, headers=headers)


async def test_calls_go_to_the_agent_routes_with_the_credential() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/agent/register":
            return httpx.Response(
                200, json={"host_id": "host_1", "credential": "gyh_s", "heartbeat_interval_s": 5}
            )
        return httpx.Response(
            200,
            json={
                "host_id": "host_1",
                "status": "ready",
                "cordoned": False,
                "heartbeat_interval_s": 3,
                "workloads": [{"spec": {"id": "wl_1", "command": "true"}, "desired": "running"}],
            },
        )

    transport = mocked(handler)
    registered = await transport.register(REGISTER)
    answer = await transport.heartbeat("gyh_s", HEARTBEAT)

    assert registered.credential == "gyh_s"
    assert answer.status is HostStatus.READY and answer.heartbeat_interval_s == 3
    assert answer.workloads[0].desired is Desired.RUNNING
    assert [r.url.path for r in seen] == ["/v1/agent/register", "/v1/agent/heartbeat"]
    assert "authorization" not in seen[0].headers
    assert seen[1].headers["authorization"] == "Bearer gyh_s"
    assert json.loads(seen[0].content)["token"] == "gyj_test"
    assert json.loads(seen[1].content)["workloads"][0]["id"] == "wl_1"


@pytest.mark.parametrize(
    ("response", "retry_after"),
    [
        (envelope(503, "draining", "unavailable", **{"Retry-After": "12"}), 12.0),
        (envelope(500, "boom", "internal_error"), None),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), None),
        (envelope(429, "slow down", "rate_limited", **{"Retry-After": "3"}), 3.0),
        (httpx.Response(408), None),
        (httpx.Response(200, text="<html>captive portal</html>"), None),
        (httpx.Response(200, json={"host_id": "h"}), None),
    ],
)
async def test_answers_worth_retrying(response: httpx.Response, retry_after: float | None) -> None:
    transport = mocked(lambda request: response)
    with pytest.raises(ServerUnavailable) as caught:
        await transport.heartbeat("gyh_s", HEARTBEAT)
    assert caught.value.retry_after == retry_after
    assert caught.value.status == response.status_code


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("Connection refused"), httpx.ReadTimeout("timed out"), httpx.ReadError("")],
)
async def test_connection_failures_are_worth_retrying(error: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(ServerUnavailable, match=r"http://gpuyard\.test/v1/agent/register"):
        await mocked(handler).register(REGISTER)


@pytest.mark.parametrize(
    ("response", "message", "code"),
    [
        (
            envelope(401, "credential revoked", "unauthenticated"),
            "credential revoked",
            "unauthenticated",
        ),
        (envelope(403, "host removed", "host_removed"), "host removed", "host_removed"),
        (httpx.Response(403, text="Forbidden"), "Forbidden", "http_403"),
        (envelope(422, "bad facts", "validation_error"), "bad facts", "validation_error"),
    ],
)
async def test_heartbeat_refusals_are_final(
    response: httpx.Response, message: str, code: str
) -> None:
    with pytest.raises(AgentRejected) as caught:
        await mocked(lambda request: response).heartbeat("gyh_s", HEARTBEAT)
    assert (caught.value.message, caught.value.code) == (message, code)
    assert caught.value.status == response.status_code


@pytest.mark.parametrize("status", [400, 401, 404, 409])
async def test_a_refused_join_token_is_final_with_the_server_message(status: int) -> None:
    response = envelope(status, "join token already used", "invalid_join_token")
    with pytest.raises(AgentRejected) as caught:
        await mocked(lambda request: response).register(REGISTER)
    assert caught.value.code == "invalid_join_token"
    assert "join token already used" in str(caught.value)


def test_server_urls_are_checked_and_normalised() -> None:
    assert normalize_server_url(" https://gpu.example.com/ ") == "https://gpu.example.com"
    assert normalize_server_url("http://10.0.0.5:8080/gpuyard/") == "http://10.0.0.5:8080/gpuyard"
    for bad in ("gpu.example.com", "ftp://gpu.example.com", "http://", ""):
        with pytest.raises(ValueError, match="bad server URL"):
            normalize_server_url(bad)


async def test_against_a_real_http_server() -> None:
    server = FakeServer(interval_s=2.0)
    server.assign(WorkloadSpec(id="wl_1", command="sleep 1"), Desired.STOPPED)
    async with serve(agent_api(server)) as url, HttpTransport(url + "/") as transport:
        registered = await transport.register(REGISTER)
        answer = await transport.heartbeat(registered.credential, HEARTBEAT)
        assert answer.host_id == registered.host_id and answer.heartbeat_interval_s == 2.0
        assert answer.workloads == list(server.assignments.values())
        assert server.statuses["wl_1"].state is WorkloadState.RUNNING

        with pytest.raises(AgentRejected) as spent:
            await transport.register(REGISTER)
        assert (spent.value.status, spent.value.code) == (401, "invalid_join_token")
        assert spent.value.message == "this join token is invalid, used or revoked"

        server.down, server.retry_after = True, 7.0
        with pytest.raises(ServerUnavailable) as down:
            await transport.heartbeat(registered.credential, HEARTBEAT)
        assert (down.value.status, down.value.retry_after) == (503, 7.0)

        server.down = False
        server.revoke_all()
        with pytest.raises(AgentRejected) as revoked:
            await transport.heartbeat(registered.credential, HEARTBEAT)
        assert revoked.value.status == 401 and "revoked" in revoked.value.message

    async with HttpTransport(url) as gone:  # nothing listens there any more
        with pytest.raises(ServerUnavailable):
            await gone.heartbeat(registered.credential, HEARTBEAT)
