"""Cursor pagination: a page of items in a stable order and an opaque cursor.

The order is creation time, ties broken by the row's insertion sequence, so items created in the
same instant still list in the order they were made.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from gpuyard.core.clock import parse_rfc3339
from gpuyard.core.errors import InvalidRequest

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ends: the creation time and insertion sequence of its last item."""

    created_at: datetime
    seq: int


def encode_cursor(position: Position) -> str:
    raw = json.dumps([position.created_at.isoformat(), position.seq], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, seq = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        if not isinstance(created, str) or not isinstance(seq, int) or isinstance(seq, bool):
            raise ValueError
        return Position(created_at=parse_rfc3339(created), seq=seq)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequest(
            "cursor is not one this API returned; pass next_cursor unchanged",
            code="invalid_cursor",
            param="cursor",
        ) from exc


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(
            f"limit must be between 1 and {MAX_LIMIT}", code="invalid_limit", param="limit"
        )
    return limit
