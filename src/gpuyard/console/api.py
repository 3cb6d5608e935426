"""``Api``: the console's calls to gpuyard's public API, with the signed-in key.

The console is a client like any script: every page and action is one or more calls to the
native API with the key the user signed in with, so it can never show or do more than that key
may. The calls go to the same process in memory (an ASGI transport over the app the console is
mounted in): the same routing, auth, validation, transactions and error envelopes as over
loopback HTTP, without a socket or knowing which address the server listens on.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

# A name no request from outside uses; the API does not route on it (the Host routing of
# serverless endpoints only claims names under its configured domain).
_BASE_URL = "http://console.invalid"


class ApiError(Exception):
    """The API refused: its status, its stable ``code`` and the message as it worded it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @property
    def signed_out(self) -> bool:
        """The key no longer works (revoked, expired, deleted): the session is over."""
        return self.status == 401


class Api:
    """One console request's calls. ``org(rest)`` is the path of the key's own org."""

    def __init__(self, app: Any, key: str, org_id: str = "") -> None:
        self.app = app
        self.key = key
        self._http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url=_BASE_URL,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30.0,
        )
        self.org_id = org_id

    async def aclose(self) -> None:
        await self._http.aclose()

    def org(self, rest: str) -> str:
        return f"/v1/orgs/{self.org_id}/{rest.lstrip('/')}"

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        response = await self._http.request(method, path, json=body, params=params, headers=headers)
        if response.status_code >= 400:
            raise refusal(response.status_code, response.content, response.reason_phrase)
        if response.status_code == 204 or not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    async def get(self, path: str, **params: Any) -> Any:
        return await self.call("GET", path, params={k: v for k, v in params.items() if v})

    async def post(
        self, path: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> Any:
        return await self.call("POST", path, body or {}, headers=headers)

    async def patch(self, path: str, body: dict[str, Any]) -> Any:
        return await self.call("PATCH", path, body)

    async def put(self, path: str, body: dict[str, Any]) -> Any:
        return await self.call("PUT", path, body)

    async def delete(self, path: str) -> Any:
        return await self.call("DELETE", path)

    async def audio(self, path: str, body: dict[str, Any]) -> tuple[str, bytes]:
        """A POST whose answer is not JSON (speech): its media type and bytes."""
        response = await self._http.post(path, json=body)
        if response.status_code >= 400:
            raise refusal(response.status_code, response.content, response.reason_phrase)
        media = response.headers.get("content-type", "application/octet-stream")
        return media.split(";")[0].strip(), response.content

    async def upload(self, path: str, filename: str, data: bytes, media_type: str) -> Any:
        """A multipart upload (field ``file``), as a script sends it."""
        response = await self._http.post(path, files={"file": (filename, data, media_type)})
        if response.status_code >= 400:
            raise refusal(response.status_code, response.content, response.reason_phrase)
        return response.json()

    async def all_pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paginated list (follows ``next_cursor``), up to 2000."""
        items: list[dict[str, Any]] = []
        cursor = None
        while len(items) < 2000:
            page = await self.get(path, limit=100, cursor=cursor, **params)
            items.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items


def refusal(status: int, content: bytes, reason: str) -> ApiError:
    """The API's refusal in its own words: the native envelope (``{"error": "…", "code"}``) or
    the OpenAI one of the inference routes (``{"error": {"message", "code", …}}``)."""
    try:
        body = json.loads(content)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    error = body.get("error")
    code = body.get("code")
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        error = error.get("message")
    return ApiError(status, str(code or f"http_{status}"), str(error or reason))
