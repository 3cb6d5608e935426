"""How the agent talks to the server: the ``AgentTransport`` seam and its HTTP implementation.

Three calls, all from the agent to the server (see ``core/agent_protocol.py``)::

    POST {server}/v1/agent/register   RegisterRequest  → RegisterResponse
    POST {server}/v1/agent/heartbeat  HeartbeatRequest → HeartbeatResponse   (Bearer credential)
    POST {server}/v1/agent/wait       WaitRequest      → WaitResponse        (Bearer credential)

Every failure is one of two exceptions, so the caller only decides *retry* or *give up*::

    ServerUnavailable (TemporaryError)  retry later: the connection failed or timed out, the server
                                        answered 5xx, 408 or 429, or its answer was not the
                                        protocol (a proxy's error page); ``retry_after`` when the
                                        server said how long to wait
    AgentRejected (PermanentError)      a person must act: 401/403 (credential revoked, host
                                        removed), or any other 4xx (a bad, used or revoked join
                                        token on register: ``invalid_join_token`` …); carries the
                                        server's ``message``, ``code`` and HTTP ``status``
"""

from __future__ import annotations

import json
import logging
from typing import Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from gpuyard.core.agent_protocol import (
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
    WaitRequest,
    WaitResponse,
)
from gpuyard.core.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

REGISTER_PATH = "/v1/agent/register"
HEARTBEAT_PATH = "/v1/agent/heartbeat"
WAIT_PATH = "/v1/agent/wait"
DEFAULT_TIMEOUT_S = 10.0

_RETRYABLE_STATUSES = {408, 425, 429}
_Response = TypeVar("_Response", bound=BaseModel)


class ServerUnavailable(TemporaryError):
    """The server could not be reached or could not answer now; try again later."""

    def __init__(
        self, reason: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(reason, delay=retry_after if retry_after is not None else 0.0)
        self.retry_after = retry_after
        self.status = status


class AgentRejected(PermanentError):
    """The server refused the agent for good (until a person acts); ``message`` is the server's."""

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def __str__(self) -> str:
        return f"{self.message} ({self.code}, HTTP {self.status})"


class AgentTransport(Protocol):
    async def register(self, request: RegisterRequest) -> RegisterResponse:
        """Spend a join token; raises ``ServerUnavailable`` or ``AgentRejected``."""
        ...

    async def heartbeat(self, credential: str, request: HeartbeatRequest) -> HeartbeatResponse:
        """One round trip: facts and statuses out, assignments back; raises as ``register``."""
        ...


class HttpTransport:
    """``AgentTransport`` over HTTP(S) with ``httpx``.

    ``client`` lets a caller share a pool or pass a test transport; without one the transport makes
    its own (closed by ``aclose()``). The proxy variables of the environment are honoured.
    """

    def __init__(
        self,
        server_url: str,
        client: httpx.AsyncClient | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.server_url = normalize_server_url(server_url)
        self._own_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout_s)
        self._timeout_s = timeout_s

    async def register(self, request: RegisterRequest) -> RegisterResponse:
        return await self._post(REGISTER_PATH, request, RegisterResponse, credential=None)

    async def heartbeat(self, credential: str, request: HeartbeatRequest) -> HeartbeatResponse:
        return await self._post(HEARTBEAT_PATH, request, HeartbeatResponse, credential=credential)

    async def wait_for_work(self, credential: str, request: WaitRequest) -> WaitResponse:
        """Hold until the host's assignments change, or ``request.timeout_s`` passes."""
        return await self._post(
            WAIT_PATH,
            request,
            WaitResponse,
            credential=credential,
            timeout_s=request.timeout_s + self._timeout_s,
        )

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> HttpTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _post(
        self,
        path: str,
        body: BaseModel,
        answer: type[_Response],
        *,
        credential: str | None,
        timeout_s: float | None = None,
    ) -> _Response:
        url = self.server_url + path
        headers = {"Content-Type": "application/json"}
        if credential is not None:
            headers["Authorization"] = f"Bearer {credential}"
        try:
            response = await self._client.post(
                url,
                content=body.model_dump_json(),
                headers=headers,
                timeout=timeout_s or self._timeout_s,
            )
        except httpx.TimeoutException as exc:
            raise ServerUnavailable(f"{url}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"{url}: {_describe(exc)}") from exc
        if response.is_success:
            try:
                return answer.model_validate_json(response.content)
            except ValidationError as exc:
                raise ServerUnavailable(
                    f"{url}: the answer is not the agent protocol "
                    f"({exc.error_count()} problem(s), first: {exc.errors()[0]['msg']})",
                    status=response.status_code,
                ) from exc
        raise _error_for(url, response)


def normalize_server_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash; raises ``ValueError``."""
    text = url.strip().rstrip("/")
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ValueError(f"bad server URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"bad server URL {url!r}: expected http(s)://HOST[:PORT]")
    return text


def _error_for(url: str, response: httpx.Response) -> Exception:
    status = response.status_code
    message, code = _error_body(response)
    if status >= 500 or status in _RETRYABLE_STATUSES:
        return ServerUnavailable(
            f"{url}: HTTP {status} {code}: {message}",
            retry_after=_retry_after(response),
            status=status,
        )
    return AgentRejected(message, code=code, status=status)


def _error_body(response: httpx.Response) -> tuple[str, str]:
    """The native envelope ``{"error": msg, "code": code}``, or a stand-in for other bodies."""
    fallback_code = f"http_{response.status_code}"
    body: object
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error: object = body.get("error")
        code: object = body.get("code")
        if isinstance(error, dict):  # tolerate {"error": {"message", "code"}} too
            nested = error
            error, code = nested.get("message"), nested.get("code", code)
        if isinstance(error, str) and error:
            return error, code if isinstance(code, str) and code else fallback_code
    text = response.text.strip().replace("\n", " ")[:200]
    return (text or response.reason_phrase or "no message"), fallback_code


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date; the backoff decides instead
    return seconds if seconds >= 0 else None


def _describe(exc: httpx.TransportError) -> str:
    return str(exc) or type(exc).__name__
