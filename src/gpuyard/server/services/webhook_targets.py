"""Where a webhook may be sent: http(s) URLs whose host resolves to public addresses only.

Loopback, private, link-local, multicast, reserved and unspecified addresses are refused (a
webhook must not reach into the operator's network: SSRF), unless the operator allows them
(``GPUYARD_WEBHOOK_ALLOW_PRIVATE_TARGETS``, which tests and single-machine setups use). The
check runs when an endpoint is saved and again before every attempt, since a name may resolve
elsewhere later; the dispatcher then connects to an address this check passed, not to the name
(which could resolve elsewhere again in between: DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from gpuyard.core.errors import InvalidRequest

MAX_URL = 2048


def check_url_shape(url: str) -> str:
    """The URL's host; InvalidRequest when it is not an absolute http(s) URL."""
    if len(url) > MAX_URL:
        raise InvalidRequest(f"url must be at most {MAX_URL} characters", param="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"url is not a valid URL: {exc}", param="url") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest("url must be an http:// or https:// URL", param="url")
    if not parts.hostname:
        raise InvalidRequest("url has no host", param="url")
    if port == 0:
        raise InvalidRequest("url has port 0", param="url")
    return parts.hostname


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve(host: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidRequest(f"url's host {host!r} does not resolve: {exc}", param="url") from None
    return sorted({str(info[4][0]) for info in infos})


async def check_target(url: str, *, allow_private: bool) -> list[str]:
    """InvalidRequest unless webhooks may be sent to ``url``; the addresses checked, IPv4 first
    (none when private targets are allowed: nothing is resolved then)."""
    host = check_url_shape(url)
    if allow_private:
        return []
    addresses = await resolve(host)
    for address in addresses:
        if not _is_public(address):
            raise InvalidRequest(
                f"url's host {host!r} is {address}, a private or local address: webhooks go "
                "to public addresses only (the operator can allow others)",
                code="webhook_target_not_allowed",
                param="url",
            )
    return sorted(addresses, key=lambda address: (":" in address, address))
