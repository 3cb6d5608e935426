"""A real HTTP receiver of webhooks on loopback for tests: it answers what the test queues (a
status and headers, else 204), records every request, and verifies each signature with the
``standardwebhooks`` package, its clock being the test's manual clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import standardwebhooks
from fastapi import FastAPI, Request, Response

from tests.harness import serve_app


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    peer: int = 0  # the sender's port: one per connection

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    now: Callable[[], datetime]
    received: list[Received] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    down: bool = False  # answer 503 to everything
    held: asyncio.Event | None = None  # answer only once it is set

    def verify(self, secret: str, message: Received) -> Any:
        """What ``standardwebhooks`` makes of ``message`` with ``secret`` at the test's now
        (raises WebhookVerificationError when the signature or timestamp is wrong)."""
        now = self.now()

        class Frozen(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Frozen:  # type: ignore[override]
                return cls.fromtimestamp(now.timestamp(), tz=tz or UTC)

        with mock.patch.object(standardwebhooks.webhooks, "datetime", Frozen):
            return standardwebhooks.Webhook(secret).verify(message.body, message.headers)

    def ids(self) -> list[str]:
        return [m.id for m in self.received]


@asynccontextmanager
async def receiver(now: Callable[[], datetime]) -> AsyncIterator[Receiver]:
    app = FastAPI()
    holder: list[Receiver] = []

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        r = holder[0]
        peer = request.client.port if request.client else 0
        r.received.append(Received(dict(request.headers), await request.body(), peer))
        if r.held is not None:
            await r.held.wait()
        if r.down:
            return Response(status_code=503)
        if r.answers:
            status, headers = r.answers.pop(0)
            return Response(status_code=status, headers=headers)
        return Response(status_code=204)

    async with serve_app(app) as base:
        holder.append(Receiver(url=f"{base}/hook", now=now))
        yield holder[0]
