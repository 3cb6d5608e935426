"""Shapes every native route shares: the error envelope, pages, and strict request bodies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
)

from gpuyard.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page

T = TypeVar("T")


BIGINT_MAX = 2**63 - 1
BigInt = Annotated[StrictInt, Field(ge=-BIGINT_MAX - 1, le=BIGINT_MAX)]
"""A JSON integer a database ``BIGINT`` holds (an id, a count): a larger one is a 422, not an
overflow in the database driver."""


class RequestBody(BaseModel):
    """Base of request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


def reject_null(*fields: str) -> Any:
    """A PATCH body's validator: ``fields`` may be left out (no change) but not sent as null,
    which their columns cannot hold. Use as ``_no_null = reject_null("a", "b")``."""

    def check(value: object) -> object:
        if value is None:
            raise ValueError("leave it out to keep its value; it cannot be null")
        return value

    return field_validator(*fields)(check)


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-14:00 is in the year 10000 in UTC
        raise ValueError(
            "is outside the times that can be stored (0001-01-01T00:00:00Z to "
            "9999-12-31T23:59:59.999999Z once converted to UTC)"
        ) from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_in_utc)]
"""An RFC 3339 time with its offset, taken as the same instant in UTC. A time whose UTC falls
outside years 1 to 9999 is a validation error (422), not an overflow deeper down."""


class ErrorOut(BaseModel):
    error: str = Field(description="What went wrong, for a human")
    code: str = Field(description="Stable machine-readable code")
    param: str | None = Field(default=None, description="The field at fault, when one is")
    request_id: str | None = Field(default=None, description="Quote this when asking for help")


class PageOut(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page")


ERROR_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing, malformed, unknown, expired or revoked API key",
    403: "The key may not do this, or its organization is suspended",
    404: "No such resource in the caller's organization",
    409: "Conflicts with the current state, or Idempotency-Key reused",
    413: "Request body too large",
    415: "The body is not JSON",
    422: "The body or parameters do not match the schema",
    429: "Rate limited",
    502: "The model server failed or answered garbage",
    503: "Temporarily unavailable",
}


def errors(*statuses: int, model: type[BaseModel] = ErrorOut) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer (with those every route
    with a body or a key can), in the error shape ``model``."""
    wanted = {400, 401, 413, 415, 422, *statuses}
    return {s: {"model": model, "description": ERROR_DESCRIPTIONS[s]} for s in sorted(wanted)}


LIMIT_DESCRIPTION = f"Page size, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT})"


def page_of(page: Page[Any], convert: Callable[[Any], T]) -> PageOut[T]:
    return PageOut[T](
        data=[convert(item) for item in page.items],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )
