"""Signing in with an API key (checked by asking the API who it is) and signing out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from gpuyard.console import session
from gpuyard.console.api import Api, ApiError
from gpuyard.console.web import PREFIX, sign_in_page

REASONS = {
    "expired": "Your key no longer works (revoked or expired): sign in again.",
    "signed-out": "Signed out.",
}


def _form(request: Request, *, error: str | None = None, status: int = 200) -> HTMLResponse:
    notice = REASONS.get(request.query_params.get("reason", ""))
    return sign_in_page(error=error, notice=notice, status=status)


async def show(request: Request) -> Response:
    if session.key_of(request):
        return RedirectResponse(f"{PREFIX}/", status_code=303)
    return _form(request)


async def submit(request: Request) -> Response:
    if not session.same_origin(request):
        return HTMLResponse("Sign in from this server's own page.", status_code=403)
    form = await request.form()
    key = form.get("api_key")
    key = key.strip() if isinstance(key, str) else ""
    if not key:
        return _form(request, error="Paste an API key to sign in.", status=400)
    api = Api(request.scope["console.api_app"], key)
    try:
        await api.get("/v1/me")
    except ApiError as exc:
        if exc.status in (401, 403):
            message = f"That key was refused: {exc.message}"
        else:
            message = exc.message
        return _form(request, error=message, status=exc.status)
    finally:
        await api.aclose()
    response = RedirectResponse(f"{PREFIX}/", status_code=303)
    session.keep_key(response, request, key)
    return response


async def sign_out(request: Request) -> Response:
    key = session.key_of(request)
    form = await request.form()
    if key and not session.csrf_ok(key, form.get(session.CSRF_FIELD)):
        return HTMLResponse("The form was stale: reload the page.", status_code=403)
    response = RedirectResponse(f"{PREFIX}/sign-in?reason=signed-out", status_code=303)
    session.forget_key(response, request)
    return response


async def home(request: Request) -> Response:
    target = "/overview" if session.key_of(request) else "/sign-in"
    return RedirectResponse(PREFIX + target, status_code=303)


routes = [
    Route("/sign-in", show, methods=["GET"]),
    Route("/sign-in", submit, methods=["POST"]),
    Route("/sign-out", sign_out, methods=["POST"]),
]
