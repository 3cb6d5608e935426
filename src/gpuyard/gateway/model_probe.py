"""Asking one ready replica of each model the same question (``GET /v1/audio/voices``): what
the inference routes that list the models' own answers use."""

from __future__ import annotations

import asyncio
from typing import Any

from gpuyard.core.principal import Principal
from gpuyard.gateway.directory import ModelDirectory
from gpuyard.gateway.usage import json_or_none
from gpuyard.http1.client import HttpClient, HttpError

PROBE_TIMEOUT_S = 2.0  # how long one replica may take


async def ask_each_model(
    directory: ModelDirectory, client: HttpClient, principal: Principal, path: str
) -> dict[str, Any]:
    """``GET path`` on one ready replica of each model the caller can reach, at once: the
    JSON answers of those that answered 200, by model (the voices of speech deployments,
    ``/v1/audio/voices``). A replica that fails, is slow or answers anything else is left
    out; nothing is logged or counted against the key."""
    models = sorted(await directory.models(principal.org_id))
    answers = await asyncio.gather(
        *(_ask(directory, client, principal, model, path) for model in models)
    )
    return {m: a for m, a in zip(models, answers, strict=True) if a is not None}


async def _ask(
    directory: ModelDirectory, client: HttpClient, principal: Principal, model: str, path: str
) -> Any:
    targets = await directory.resolve(principal.org_id, model)
    if not targets:
        return None
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            response = await client.request(targets[0].url, "GET", path, [], b"")
            try:
                if response.status_code != 200:
                    return None
                parts = []
                while chunk := await response.read():
                    parts.append(chunk)
            finally:
                response.close()
    except (OSError, TimeoutError, HttpError):
        return None
    return json_or_none(b"".join(parts))
