"""Where the signed-in key lives, and the CSRF token of the console's forms.

The key is kept in one cookie, ``HttpOnly`` (no script reads it, of this origin or any other),
``SameSite=Strict`` (no other site's page makes the browser send it), ``Path=/console`` (sent to
the console's pages only, never to the API) and ``Secure`` when the console was reached over
HTTPS. It is a session cookie: closing the browser ends it; a revoked or expired key ends it at
the next page (the API answers 401 and the console clears it).

Keeping the key itself, rather than a session id pointing at it, means no session table and no
state shared between API worker processes, and a session can never outlive the key.

Every form the console posts carries a CSRF token: an HMAC of a fixed label under the key, so it
needs no storage, differs per key, and cannot be made without the key. With ``SameSite=Strict``
a cross-site post would not carry the cookie anyway; the token is the second lock.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "gpuyard_console"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf"


def key_of(request: Request) -> str | None:
    key = request.cookies.get(COOKIE)
    return key or None


def keep_key(response: Response, request: Request, key: str) -> None:
    response.set_cookie(
        COOKIE,
        key,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def forget_key(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def csrf_token(key: str) -> str:
    return hmac.new(key.encode(), b"gpuyard console form", hashlib.sha256).hexdigest()


def csrf_ok(key: str, sent: object) -> bool:
    return isinstance(sent, str) and hmac.compare_digest(csrf_token(key), sent)


def same_origin(request: Request) -> bool:
    """A browser's POST names its page's origin; one from another site is refused (this stops a
    foreign page signing the browser in with the attacker's key, where no cookie exists yet)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")
