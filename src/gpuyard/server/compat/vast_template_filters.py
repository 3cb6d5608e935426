"""``GET /api/v0/template/``'s ``select_filters``: ``{"field": {"op": value}}`` over template
rows, with the ops of Vast's query language (``eq neq in notin gt gte lt lte``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuyard.core.errors import InvalidRequest
from gpuyard.server.schemas.vast_serverless import VastTemplate

_FIELDS = frozenset(VastTemplate.model_fields)
_ORDERED = {"gt", "gte", "lt", "lte"}


def _holds(op: str, have: Any, want: Any) -> bool:
    if op == "eq":
        return bool(have == want)
    if op == "neq":
        return bool(have != want)
    if op == "in":
        return bool(have in want)
    if op == "notin":
        return bool(have not in want)
    if have is None or not isinstance(have, int | float):
        return False
    ordered = {
        "gt": have > want,
        "gte": have >= want,
        "lt": have < want,
        "lte": have <= want,
    }
    return bool(ordered[op])


def matching(rows: list[VastTemplate], query: object) -> list[VastTemplate]:
    if not isinstance(query, Mapping):
        raise InvalidRequest("select_filters must be a JSON object", param="select_filters")
    checks: list[tuple[str, str, Any]] = []
    for name, ops in query.items():
        if name not in _FIELDS:
            raise InvalidRequest(f"select_filters: unknown field {name!r}", param="select_filters")
        if not isinstance(ops, Mapping):
            ops = {"eq": ops}
        for op, value in ops.items():
            if op in ("in", "notin") and not isinstance(value, list):
                raise InvalidRequest(f"select_filters: {op} needs a list", param="select_filters")
            if op in _ORDERED and not isinstance(value, int | float):
                raise InvalidRequest(f"select_filters: {op} needs a number", param="select_filters")
            if op not in ("eq", "neq", "in", "notin") and op not in _ORDERED:
                raise InvalidRequest(
                    f"select_filters: unknown operator {op!r}", param="select_filters"
                )
            checks.append((name, op, value))
    return [r for r in rows if all(_holds(op, getattr(r, n), v) for n, op, v in checks)]
