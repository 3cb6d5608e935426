"""Health checks of a workload: an HTTP path that answers 2xx/3xx, or a TCP port that accepts.

Both return ``False`` (never raise) when the workload is not healthy, unreachable or slow.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


async def check_http(
    host: str,
    port: int,
    path: str = "/",
    timeout_s: float = 2.0,
    *,
    client: httpx.AsyncClient | None = None,
) -> bool:
    """True when ``GET http://host:port/path`` answers with a status below 400 within ``timeout_s``.

    Redirects are not followed: a 3xx proves the server is up. ``client`` lets a caller share
    a connection pool (or a test transport); one is made for the call otherwise.
    """
    url = f"http://{_host_in_url(host)}:{port}/{path.lstrip('/')}"
    try:
        if client is not None:
            response = await client.get(url, timeout=timeout_s)
        else:
            async with httpx.AsyncClient(timeout=timeout_s, trust_env=False) as own:
                response = await own.get(url)
    except (httpx.HTTPError, httpx.InvalidURL, OSError):
        return False
    return response.status_code < 400


async def check_tcp(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """True when a TCP connection to ``host:port`` opens within ``timeout_s``."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
