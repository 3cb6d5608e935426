"""``Client``: authenticated calls to the native API; non-2xx answers raise ``ApiError``."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx


class ApiError(Exception):
    """The server refused: ``status``, its stable ``code`` and human ``message``."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


class Client:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self._org_id: str | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.send(method, path, **kwargs)
        if response.status_code == 204:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The whole response (headers too); a non-2xx one raises ``ApiError``."""
        response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise ApiError(
                response.status_code,
                str(body.get("code", f"http_{response.status_code}")),
                str(body.get("error", response.text[:200] or response.reason_phrase)),
                response.headers.get("x-request-id"),
            )
        return response

    async def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return await self.request("GET", path, params=clean)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return await self.request("POST", path, json=body or {})

    async def org_id(self) -> str:
        """The org of the key, asked once."""
        if self._org_id is None:
            me = await self.get("/v1/me")
            self._org_id = str(me["org_id"])
        return self._org_id

    async def org_path(self, rest: str) -> str:
        return f"/v1/orgs/{await self.org_id()}/{rest.lstrip('/')}"
