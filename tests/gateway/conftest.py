"""Fixtures of the gateway tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.gateway.upstream import fake_model_server
from tests.harness import serve_app


@pytest.fixture
async def upstream_port() -> AsyncIterator[int]:
    async with serve_app(fake_model_server()) as url:
        yield int(url.rsplit(":", 1)[1])
