"""``GET /api/v1/instances/``'s query: ``select_filters``, ``order_by`` and ``after_token``.

The ``vastai`` CLI sends ``select_filters`` as JSON (``{"actual_status": {"in": ["running"]}}``,
``{"label": {"in": [null, "x"]}}``), ``order_by`` as ``[{"col": "id", "dir": "asc"}]`` and pages
with ``limit`` and ``after_token`` until ``next_token`` is null. An org's instances are few, so
they are filtered and ordered here, over the rows the instances service returns.

- Filter ops: ``eq neq in notin gt gte lt lte``. ``eq``/``in`` match ``null`` by value (an
  unlabeled instance matches ``{"label": {"in": [null]}}``); ``gt``..``lte`` never match null.
  ``gpu_name`` compares by GPU type (``RTX_4090`` is ``RTX 4090``).
- Order: nulls last in either direction; ``id`` is appended so the order is total.
- ``next_token`` is the sort key of a page's last row; the next page holds the rows after it, so
  paging is stable while instances come and go.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cmp_to_key
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

from gpuyard.core.errors import InvalidRequest
from gpuyard.core.gpu_names import gpu_key
from gpuyard.core.pagination import Page
from gpuyard.server.schemas.vast_instances import VastInstance

T = TypeVar("T")
Key = tuple[float | str | None, ...]

_OPS = frozenset({"eq", "neq", "in", "notin", "gt", "gte", "lt", "lte"})
_COLUMNS = frozenset(VastInstance.model_fields)
_SCALARS = (int, float, str, bool, type(None))


def _scalar(annotation: Any) -> bool:
    """``int``, ``str | None``, ...: a type whose values order (not lists or dicts)."""
    if get_origin(annotation) in (Union, UnionType):
        return all(_scalar(arg) for arg in get_args(annotation))
    return annotation in _SCALARS


_ORDERABLE = frozenset(
    name for name, info in VastInstance.model_fields.items() if _scalar(info.annotation)
)


async def drain(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> list[T]:
    """Every item of a paged service call, following its cursors."""
    items: list[T] = []
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        items.extend(page.items)
        if not page.has_more or page.next_cursor is None:
            return items
        cursor = page.next_cursor


@dataclass(frozen=True, slots=True)
class Condition:
    column: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class OrderCol:
    column: str
    descending: bool


def _json(text: str | None, param: str) -> Any:
    if text is None or not text.strip():
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise InvalidRequest(f"{param} is not valid JSON: {exc}", param=param) from None


def _column(name: object, param: str) -> str:
    if not isinstance(name, str) or name not in _COLUMNS:
        raise InvalidRequest(f"{param}: unknown instance field {name!r}", param=param)
    return name


def parse_filters(text: str | None) -> list[Condition]:
    obj = _json(text, "select_filters")
    if obj is None:
        return []
    if not isinstance(obj, Mapping):
        raise InvalidRequest("select_filters must be a JSON object", param="select_filters")
    conditions = []
    for name, ops in obj.items():
        column = _column(name, "select_filters")
        if not isinstance(ops, Mapping):
            ops = {"in" if isinstance(ops, list) else "eq": ops}
        for op, value in ops.items():
            if op not in _OPS:
                raise InvalidRequest(
                    f"select_filters: {column}: unknown operator {op!r}; use one of "
                    + " ".join(sorted(_OPS)),
                    param="select_filters",
                )
            if op in ("in", "notin") and not isinstance(value, list):
                raise InvalidRequest(
                    f"select_filters: {column}: {op} needs a list", param="select_filters"
                )
            if op in ("gt", "gte", "lt", "lte") and not _is_number(value):
                raise InvalidRequest(
                    f"select_filters: {column}: {op} needs a number", param="select_filters"
                )
            conditions.append(Condition(column, op, value))
    return conditions


def parse_order(text: str | None) -> list[OrderCol]:
    obj = _json(text, "order_by")
    if obj is not None and not isinstance(obj, list):
        raise InvalidRequest(
            'order_by must be a list like [{"col": "id", "dir": "asc"}]', param="order_by"
        )
    order: list[OrderCol] = []
    for item in obj or []:
        if isinstance(item, Mapping):
            col, direction = item.get("col"), item.get("dir", "asc")
        elif isinstance(item, list) and len(item) == 2:
            col, direction = item
        else:
            raise InvalidRequest(
                'order_by must be a list like [{"col": "id", "dir": "asc"}]', param="order_by"
            )
        if direction not in ("asc", "desc"):
            raise InvalidRequest(
                f"order_by: dir must be asc or desc, got {direction!r}", param="order_by"
            )
        column = _column(col, "order_by")
        if column not in _ORDERABLE:
            raise InvalidRequest(f"order_by: cannot order by {column}", param="order_by")
        order.append(OrderCol(column, direction == "desc"))
    if not any(o.column == "id" for o in order):
        order.append(OrderCol("id", False))
    return order


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _norm(column: str, value: Any) -> Any:
    if column == "gpu_name" and isinstance(value, str):
        return gpu_key(value)
    return value


def _holds(row: VastInstance, c: Condition) -> bool:
    actual = _norm(c.column, getattr(row, c.column))
    if c.op in ("eq", "neq"):
        return bool(actual == _norm(c.column, c.value)) == (c.op == "eq")
    if c.op in ("in", "notin"):
        found = any(actual == _norm(c.column, v) for v in c.value)
        return found == (c.op == "in")
    if not _is_number(actual):
        return False
    match c.op:
        case "gt":
            return bool(actual > c.value)
        case "gte":
            return bool(actual >= c.value)
        case "lt":
            return bool(actual < c.value)
        case _:
            return bool(actual <= c.value)


def select(rows: Sequence[VastInstance], conditions: Sequence[Condition]) -> list[VastInstance]:
    return [row for row in rows if all(_holds(row, c) for c in conditions)]


def _key(row: VastInstance, order: Sequence[OrderCol]) -> Key:
    parts: list[float | str | None] = []
    for o in order:
        value = getattr(row, o.column)
        if value is None or isinstance(value, str):
            parts.append(value)
        else:
            parts.append(float(value))
    return tuple(parts)


def _compare(a: Key, b: Key, order: Sequence[OrderCol]) -> int:
    for x, y, o in zip(a, b, order, strict=True):
        if x == y:
            continue
        if x is None:
            return 1
        if y is None:
            return -1
        if isinstance(x, str) != isinstance(y, str):
            raise InvalidRequest(
                "after_token does not belong to this order_by", code="invalid_cursor"
            )
        less = x < y  # type: ignore[operator]
        return (1 if less else -1) if o.descending else (-1 if less else 1)
    return 0


def encode_token(key: Key) -> str:
    raw = json.dumps(list(key), separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, order: Sequence[OrderCol]) -> Key:
    try:
        padded = token + "=" * (-len(token) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        if not isinstance(values, list) or len(values) != len(order):
            raise ValueError
        key: list[float | str | None] = []
        for v in values:
            if v is not None and not isinstance(v, str) and not _is_number(v):
                raise ValueError
            key.append(float(v) if _is_number(v) else v)
        return tuple(key)
    except (
        ValueError,
        TypeError,
        OverflowError,  # an integer beyond every float
        RecursionError,
        binascii.Error,
        UnicodeDecodeError,
    ):
        raise InvalidRequest(
            "after_token is not one this API returned; pass next_token unchanged",
            code="invalid_cursor",
            param="after_token",
        ) from None


def paginate(
    rows: Sequence[VastInstance],
    order: Sequence[OrderCol],
    *,
    limit: int,
    after_token: str | None,
) -> tuple[list[VastInstance], str | None]:
    """One page of ``rows`` in ``order`` after ``after_token``, and the token of the next page
    (None on the last one)."""
    keyed = [(_key(row, order), row) for row in rows]

    def by_key(a: tuple[Key, VastInstance], b: tuple[Key, VastInstance]) -> int:
        return _compare(a[0], b[0], order)

    keyed.sort(key=cmp_to_key(by_key))
    if after_token:
        after = decode_token(after_token, order)
        keyed = [(k, row) for k, row in keyed if _compare(k, after, order) > 0]
    page = keyed[:limit]
    token = encode_token(page[-1][0]) if len(keyed) > limit else None
    return [row for _, row in page], token


def label_counts(rows: Sequence[VastInstance]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.label or ""] = counts.get(row.label or "", 0) + 1
    return counts
