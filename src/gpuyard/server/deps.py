"""Annotated dependencies: the request's session, the clock, the caller, and org scoping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import NotFound, PermissionDenied
from gpuyard.core.principal import Principal, Scope
from gpuyard.server.context import AppContext
from gpuyard.server.db import write_session
from gpuyard.server.middleware import asgi
from gpuyard.server.middleware.unit_of_work import RequestUnitOfWork
from gpuyard.server.middleware.unit_of_work import reads_only as reads_only  # for routes
from gpuyard.server.services import auth
from gpuyard.server.settings import Settings

_READ_METHODS = {"GET", "HEAD", "OPTIONS"}


async def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Context = Annotated[AppContext, Depends(get_context)]


async def get_settings(ctx: Context) -> Settings:
    return ctx.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_clock(ctx: Context) -> Clock:
    return ctx.clock


ClockDep = Annotated[Clock, Depends(get_clock)]


async def get_session(request: Request) -> AsyncSession:
    uow: RequestUnitOfWork = request.state.uow
    return await uow.get()


Session = Annotated[AsyncSession, Depends(get_session)]


def credential(request: Request) -> str | None:
    """The API key from ``Authorization: Bearer`` or, for the Vast dialect, ``?api_key=``."""
    return asgi.credential(request.scope)


# How a caller authenticates, as /openapi.json declares it (so generated clients, Swagger UI
# and Postman send the key). Declarations only: ``credential()`` reads the key, and an invalid
# one is answered by ``auth.authenticate`` in the error envelope.
bearer_key = HTTPBearer(
    scheme_name="api_key",
    bearerFormat="vl_…",
    description="An API key (vl_…) as `Authorization: Bearer vl_…`.",
    auto_error=False,
)
vast_query_key = APIKeyQuery(
    name="api_key",
    scheme_name="vast_api_key",
    description="The Vast dialect also takes the key as `?api_key=vl_…`, as the vastai CLI "
    "sends it.",
    auto_error=False,
)
DeclaredKey = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_key)]


async def get_principal(
    request: Request, session: Session, ctx: Context, _declared: DeclaredKey
) -> Principal:
    principal, stale = await auth.authenticate(session, clock=ctx.clock, secret=credential(request))
    if stale:

        async def touch() -> None:
            async with write_session(ctx.sessions) as s:
                await auth.touch_last_used(s, clock=ctx.clock, key_id=principal.key_id)

        request.state.uow.after_transaction(touch)
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(get_principal)]


def require(principal: Principal, scope: Scope) -> None:
    if not principal.allows(scope):
        what = {
            Scope.WRITE: "this key is read-only",
            Scope.READ: "this key may not read organization resources",
            Scope.OPERATOR: "this needs an operator key",
            Scope.INFERENCE: "this key may not call inference",
        }[scope]
        raise PermissionDenied(
            f"{what} (this key's scopes: {', '.join(sorted(principal.scopes))})",
            code="insufficient_scope",
        )


def org_member(
    request: Request,
    principal: Caller,
    org_id: Annotated[str, Path(description="The organization's id (org_…)")],
) -> Principal:
    """The caller, on their own org's path; reads need org:read, writes org:write.

    Another org's id answers 404 exactly like an id that does not exist.
    """
    if org_id != principal.org_id:
        raise NotFound(f"organization {org_id} not found", code="org_not_found")
    require(principal, Scope.READ if request.method in _READ_METHODS else Scope.WRITE)
    return principal


OrgMember = Annotated[Principal, Depends(org_member)]


def operator(principal: Caller) -> Principal:
    require(principal, Scope.OPERATOR)
    return principal


Operator = Annotated[Principal, Depends(operator)]


def _once_ended(request: Request, action: Callable[[], None]) -> Callable[[], None]:
    """What a route calls to have ``action`` run when the request's transaction has ended."""

    def changed() -> None:
        async def run() -> None:
            action()

        request.state.uow.after_transaction(run)

    return changed


def keys_changed(request: Request, ctx: Context) -> Callable[[], None]:
    """What a route calls once it has revoked a key or suspended an org: when the request's
    transaction has ended, the gateway's key cache reads every key again, so the change holds at
    once on this replica (and within a second on the others, see gateway/auth.py)."""
    return _once_ended(request, ctx.gateway.auth.forget)


def prices_changed(request: Request, ctx: Context) -> Callable[[], None]:
    """What a route calls once it has set or deleted a model's price: when the request's
    transaction has ended, the gateway reads which models are priced again (at once on this
    replica, within a second on the others, see services/token_charges.PricedModels)."""
    return _once_ended(request, ctx.gateway.spend.prices_changed)


KeysChanged = Annotated[Callable[[], None], Depends(keys_changed)]
PricesChanged = Annotated[Callable[[], None], Depends(prices_changed)]
