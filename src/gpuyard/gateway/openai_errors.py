"""The OpenAI error shape, ``{"error": {"message", "type", "param", "code"}}``, that the official
``openai`` SDK parses: for the gateway's own errors about a replica (relay.py) and, through
server/errors.py, for every error answer of the OpenAI-compatible routes."""

from __future__ import annotations

import json
from typing import Any

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


def error_object(status: int, message: str, code: str, param: str | None = None) -> dict[str, Any]:
    kind = TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    if code == "insufficient_quota":  # OpenAI's type for a spent balance
        kind = code
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_json(status: int, message: str, code: str) -> bytes:
    """The body of an error the gateway reports about a replica."""
    return json.dumps(error_object(status, message, code)).encode()
