"""The inference gateway: route an OpenAI-style request to a ready replica and relay its answer.

``Gateway.call`` returns a ``Relay``: either a complete answer (status, headers, body) or an
open stream whose chunks the HTTP layer sends on. Usage comes from the upstream's ``usage``; for
streams the gateway asks for it (``stream_options.include_usage``) and removes that extra chunk
again if the client had not asked. One request-log row per request is queued once it ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gpuyard.core.clock import Clock
from gpuyard.core.errors import InvalidRequest, NotFound, Unavailable
from gpuyard.core.principal import Principal
from gpuyard.gateway.auth import PrincipalCache
from gpuyard.gateway.balancer import LeastOutstanding
from gpuyard.gateway.directory import ModelDirectory, Target
from gpuyard.gateway.logs import RequestLogWriter
from gpuyard.gateway.proxy import Upstream, open_upstream
from gpuyard.gateway.usage import (
    SseEvents,
    Usage,
    event_json,
    is_usage_only,
    usage_from_json,
    usage_of,
)
from gpuyard.server.db import write_session
from gpuyard.server.services import rate_limits

log = logging.getLogger(__name__)
MAX_STREAM_ERROR = 500


@dataclass
class Relay:
    status: int
    headers: dict[str, str]
    body: bytes | None = None
    stream: AsyncIterator[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # Recursion: nested too deep
        raise InvalidRequest("request body is not valid JSON", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_request")
    return body


def _check(endpoint: str, body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest(
            "you must provide a model parameter", param="model", code="missing_model"
        )
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequest("stream must be true or false", param="stream")
    if endpoint == "chat/completions":
        messages = body.get("messages")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
        ):
            raise InvalidRequest(
                "messages must be a non-empty list of {role, content} objects", param="messages"
            )
    if endpoint == "embeddings" and not isinstance(body.get("input"), str | list):
        raise InvalidRequest("input must be a string or a list", param="input")
    if endpoint == "audio/speech" and not isinstance(body.get("input"), str):
        raise InvalidRequest("input must be a string", param="input")
    return model


class Gateway:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        client: httpx.AsyncClient | None = None,
        directory_ttl: float = 1.0,
        auth_ttl: float = 5.0,
    ) -> None:
        self.clock = clock
        self.sessions = sessions
        self._background: set[asyncio.Task[None]] = set()
        self.directory = ModelDirectory(sessions, ttl=directory_ttl)
        self.balancer = LeastOutstanding()
        self.auth = PrincipalCache(sessions, clock, ttl=auth_ttl)
        self.logs = RequestLogWriter(sessions)
        self.client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(connect=2.0, read=600.0, write=60.0, pool=10.0),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
        )

    async def start(self) -> None:
        self.logs.start()

    async def stop(self) -> None:
        await self.settle()
        await self.logs.stop()
        await self.client.aclose()

    async def targets(self, principal: Principal, model: str) -> list[Target]:
        targets = await self.directory.resolve(principal.org_id, model)
        if not targets:
            raise NotFound(
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
                param="model",
            )
        return targets

    async def call(
        self, principal: Principal, endpoint: str, raw: bytes, headers: dict[str, str]
    ) -> Relay:
        started = time.perf_counter()
        body = _json_object(raw)
        model = _check(endpoint, body)
        stream = bool(body.get("stream"))
        strip_usage = False
        if stream and endpoint in ("chat/completions", "completions"):
            options = body.get("stream_options")
            if not isinstance(options, dict) or not options.get("include_usage"):
                strip_usage = True
                body["stream_options"] = {**(options or {}), "include_usage": True}
                raw = json.dumps(body).encode()
        targets = await self.targets(principal, model)
        if principal.rpm_limit is not None or principal.tpm_limit is not None:
            async with write_session(self.sessions) as session:
                await rate_limits.admit(session, principal=principal, now=self.clock.now())
        headers = {**headers, "content-type": "application/json"}
        upstream = await open_upstream(
            client=self.client,
            balancer=self.balancer,
            targets=targets,
            method="POST",
            path=f"/v1/{endpoint}",
            headers=headers,
            body=raw,
        )
        record = {
            "org_id": principal.org_id,
            "key_id": principal.key_id,
            "endpoint": endpoint,
            "model": model,
            "cluster_id": upstream.target.cluster_id,
            "replica_id": upstream.target.replica_id,
            "stream": stream,
            "_count_tokens": principal.tpm_limit is not None,
        }
        content_type = upstream.response.headers.get("content-type", "application/json")
        if not stream or upstream.response.status_code != 200 or "event-stream" not in content_type:
            try:
                data = await upstream.read_all()
            except httpx.HTTPError as exc:
                self._log(record, 502, started, None, f"upstream failed: {exc!r}")
                raise Unavailable(
                    "the model server failed while answering; retry", retry_after=1
                ) from exc
            finally:
                await upstream.close()
            usage = usage_from_json(data) if "json" in content_type else None
            self._log(record, upstream.response.status_code, started, usage, None)
            return Relay(upstream.response.status_code, {"content-type": content_type}, body=data)
        return Relay(
            200,
            {"content-type": content_type, "cache-control": "no-cache"},
            stream=self._relay_stream(upstream, strip_usage, record, started),
        )

    async def _relay_stream(
        self, upstream: Upstream, strip_usage: bool, record: dict[str, Any], started: float
    ) -> AsyncIterator[bytes]:
        events = SseEvents()
        usage: Usage | None = None
        error: str | None = None
        done = False
        try:
            async for chunk in upstream.chunks():
                for event in events.feed(chunk):
                    obj = event_json(event)
                    found = usage_of(obj)
                    if found is not None:
                        usage = found
                    if b"[DONE]" in event:
                        done = True
                    if strip_usage and is_usage_only(obj):
                        continue
                    yield event
            rest = events.rest()
            if rest.strip():
                yield rest
            if not done:
                error = "the model server ended the stream early"
        except httpx.HTTPError as exc:
            error = f"the model server failed mid-stream: {type(exc).__name__}"
        finally:
            await upstream.close()
            self._log(record, 200, started, usage, error)
        if error is not None:
            payload = {
                "error": {
                    "message": error,
                    "type": "api_error",
                    "param": None,
                    "code": "upstream_error",
                }
            }
            yield f"data: {json.dumps(payload)}\n\n".encode()
            yield b"data: [DONE]\n\n"

    def _log(
        self,
        record: dict[str, Any],
        status: int,
        started: float,
        usage: Usage | None,
        error: str | None,
    ) -> None:
        record = dict(record)
        if record.pop("_count_tokens", False) and usage is not None:
            tokens = (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)
            if tokens:
                self._spawn(self._count_tokens(record["key_id"], tokens))
        self.logs.submit(
            created_at=self.clock.now(),
            status=status,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            error=error[:MAX_STREAM_ERROR] if error else None,
            **record,
        )

    async def _count_tokens(self, key_id: str, tokens: int) -> None:
        try:
            async with write_session(self.sessions) as session:
                await rate_limits.add_tokens(
                    session, key_id=key_id, tokens=tokens, now=self.clock.now()
                )
        except Exception:
            log.exception("could not count %d tokens for %s", tokens, key_id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for token counting in flight (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
