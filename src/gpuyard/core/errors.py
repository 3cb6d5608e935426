"""The one error taxonomy of gpuyard.

Every error a service or controller raises on purpose is a ``GpuyardError`` with a stable ``code``
and a human ``message`` (plus ``param`` when one field is at fault). HTTP status codes are *not*
decided here: ``server/app.py`` maps each class to a status in one table.

    GpuyardError
    ├── InvalidRequest      the input is wrong (bad field, bad value, bad id shape)
    │   ├── PayloadTooLarge the body is over the size limit
    │   └── UnsupportedMediaType  a kind of content this route does not take
    ├── Unauthenticated     no credential, or one that is malformed, unknown, expired or revoked
    ├── PermissionDenied    the credential is valid but may not do this
    ├── NotFound            no such thing, or it belongs to another org (never reveal which)
    ├── Conflict            the state forbids it now (already rented, name taken, key reused)
    ├── RateLimited         too many requests; ``retry_after`` seconds
    ├── InsufficientQuota   the org's balance is spent (its spending was stopped)
    └── Unavailable         a dependency is down or nothing can serve it now; ``retry_after``

Controllers add retry semantics on top: ``TemporaryError`` (try again after ``delay``) and
``PermanentError`` (give up, record the reason).
"""

from __future__ import annotations


class GpuyardError(Exception):
    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param


class InvalidRequest(GpuyardError):
    code = "invalid_request"


class PayloadTooLarge(InvalidRequest):
    code = "payload_too_large"


class UnsupportedMediaType(InvalidRequest):
    code = "unsupported_media_type"


class Unauthenticated(GpuyardError):
    code = "unauthenticated"


class PermissionDenied(GpuyardError):
    code = "permission_denied"


class NotFound(GpuyardError):
    code = "not_found"


class Conflict(GpuyardError):
    code = "conflict"


class RateLimited(GpuyardError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class InsufficientQuota(GpuyardError):
    code = "insufficient_quota"


class Unavailable(GpuyardError):
    code = "unavailable"

    def __init__(
        self, message: str, *, retry_after: float | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class TemporaryError(Exception):
    """A controller step failed for a reason that may pass; retry after ``delay`` seconds."""

    def __init__(self, reason: str, *, delay: float = 5.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class PermanentError(Exception):
    """A controller step can never succeed as asked; record ``reason`` and stop retrying."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
