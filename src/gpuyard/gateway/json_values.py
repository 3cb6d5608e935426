"""Reading JSON on the gateway's path: orjson first (several times faster than the standard
library, and the gateway reads every request body and every streamed event), then Python's own
parser for what orjson refuses but JSON as servers write it may hold (``NaN``, ``Infinity``,
integers beyond 64 bits), so that the choice of parser never changes what is accepted."""

from __future__ import annotations

import json
from typing import Any

import orjson


class NotJson(ValueError):
    """The bytes are not one JSON value."""


def loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # Recursion: nested too deep
        raise NotJson(str(exc)) from exc
