"""What every console page shares: the signed-in ``Visit``, rendering into the layout, and the
``page`` / ``action`` wrappers that sign out on a dead key, check the CSRF token and show the
API's own words when it refuses.

A resource's module (``pages/*.py``) writes a ``view`` (GET: read through the API, render its
template) and ``action``s (POST: one API call, then back to a page); a refusal re-renders the
view with the API's message and status, so nothing is half done and nothing is lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gpuyard.console import session
from gpuyard.console.api import Api, ApiError
from gpuyard.core.principal import Scope

PREFIX = "/console"

templates = Environment(
    loader=PackageLoader("gpuyard.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def money(cents: int | None) -> str:
    """Integer cents as dollars for people: ``-1234`` -> ``-$12.34``."""
    if cents is None:
        return "—"
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}${whole:,}.{part:02d}"


templates.filters["money"] = money


@dataclass(frozen=True)
class NavItem:
    path: str  # under PREFIX
    title: str
    operator: bool = False  # shown to operator keys only


@dataclass
class Visit:
    """One signed-in request: the key's view of the world and its API calls."""

    request: Request
    api: Api
    me: dict[str, Any]
    csrf: str
    nav: list[NavItem] = field(default_factory=list)

    @property
    def scopes(self) -> set[str]:
        return set(self.me["scopes"])

    @property
    def is_operator(self) -> bool:
        return Scope.OPERATOR.value in self.scopes

    @property
    def can_write(self) -> bool:
        return self.is_operator or Scope.WRITE.value in self.scopes

    async def form(self) -> dict[str, str]:
        """The posted fields (text only; a file field is refused as not text)."""
        found = await self.request.form()
        return {k: v for k, v in found.items() if isinstance(v, str)}

    def render(self, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
        html = templates.get_template(template).render(
            visit=self,
            me=self.me,
            nav=[n for n in self.nav if self.is_operator or not n.operator],
            path=self.request.url.path,
            prefix=PREFIX,
            csrf=self.csrf,
            **values,
        )
        return HTMLResponse(html, status_code=status)


View = Callable[..., Awaitable[Response]]
Handler = Callable[[Request], Awaitable[Response]]


def sign_in_url(reason: str | None = None) -> str:
    return f"{PREFIX}/sign-in" + (f"?reason={quote(reason)}" if reason else "")


def sign_in_page(
    *, error: str | None = None, notice: str | None = None, status: int = 200
) -> HTMLResponse:
    html = templates.get_template("sign_in.html").render(
        prefix=PREFIX, error=error, notice=None if error else notice
    )
    return HTMLResponse(html, status_code=status)


def _go(request: Request, url: str) -> Response:
    """A redirect; to htmx's polling, an ``HX-Redirect`` so the whole page goes there."""
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _signed_out(request: Request, reason: str) -> Response:
    response = _go(request, sign_in_url(reason))
    session.forget_key(response, request)
    return response


def with_visit(nav: list[NavItem], handle: Callable[[Visit], Awaitable[Response]]) -> Handler:
    async def endpoint(request: Request) -> Response:
        key = session.key_of(request)
        if key is None:
            return _go(request, sign_in_url())
        api = Api(request.scope["console.api_app"], key)
        try:
            try:
                me = await api.get("/v1/me")
            except ApiError as exc:
                if exc.signed_out:
                    return _signed_out(request, "expired")
                # The key works no more for another reason (its org suspended, say): the
                # sign-in page, with the API's words.
                refused = sign_in_page(error=exc.message, status=exc.status)
                session.forget_key(refused, request)
                return refused
            api.org_id = me["org_id"]
            visit = Visit(request, api, me, session.csrf_token(key), nav)
            if request.method == "POST":
                form = await visit.form()
                if not (
                    session.same_origin(request)
                    and session.csrf_ok(key, form.get(session.CSRF_FIELD))
                ):
                    return visit.render(
                        "error.html", status=403, message="The form was stale: reload the page."
                    )
            try:
                return await handle(visit)
            except ApiError as exc:
                if exc.signed_out:
                    return _signed_out(request, "expired")
                raise
        finally:
            await api.aclose()

    return endpoint


def page(view: View) -> Callable[[Visit], Awaitable[Response]]:
    """A GET page: the view with no error."""

    async def run(visit: Visit) -> Response:
        try:
            return await view(visit)
        except ApiError as exc:
            if exc.signed_out:
                raise
            return visit.render("error.html", status=exc.status, message=exc.message)

    return run


def action(
    view: View, act: Callable[[Visit], Awaitable[str | Response]]
) -> Callable[[Visit], Awaitable[Response]]:
    """A POST: ``act`` makes its API calls and returns where to go next (or a response); an API
    refusal shows ``view`` again with the API's message, under the API's status."""

    async def run(visit: Visit) -> Response:
        try:
            done = await act(visit)
        except ApiError as exc:
            if exc.signed_out:
                raise
            try:
                return await view(visit, error=exc.message, status=exc.status)
            except ApiError as again:
                return visit.render("error.html", status=again.status, message=again.message)
        if isinstance(done, Response):
            return done
        return RedirectResponse(PREFIX + done, status_code=303)

    return run


def text(form: dict[str, str], name: str) -> str | None:
    """A form field, stripped; None when empty."""
    value = form.get(name, "").strip()
    return value or None


def pairs(block: str | None) -> dict[str, str]:
    """``KEY=value`` lines (environment variables) into a dict; blank lines skipped."""
    found: dict[str, str] = {}
    for line in (block or "").splitlines():
        if line.strip():
            name, _, value = line.partition("=")
            found[name.strip()] = value.strip()
    return found


class InvalidForm(ApiError):
    """A field the console itself cannot turn into the API's body (e.g. not a number)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "invalid_request", message)


def integer(form: dict[str, str], name: str, label: str) -> int | None:
    value = text(form, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidForm(f"{label} must be a whole number") from None


def cents(form: dict[str, str], name: str, label: str) -> int | None:
    """Dollars as typed (``25``, ``25.5``, ``25.50``) into whole cents; more than two decimals,
    or not a number, is refused in the console's words (the API takes whole cents only)."""
    value = text(form, name)
    if value is None:
        return None
    try:
        amount = Decimal(value.replace(",", "").lstrip("$"))
        exact = amount.is_finite() and amount == amount.quantize(Decimal("0.01"))
    except InvalidOperation:
        raise InvalidForm(f"{label} must be an amount in dollars, like 25.00") from None
    if not exact:
        raise InvalidForm(f"{label} must be an amount in dollars, in whole cents (like 25.00)")
    return int(amount * 100)
