"""The offer query string syntax of the ``vastai`` CLI, turned into Vast's JSON filters.

``'gpu_name=RTX_4090 num_gpus>=2 geolocation in [TW,SE]'`` is a list of ``field op value``
clauses. The rules are those of ``vastai search offers`` so that a string means the same JSON body
whether the ``vastai`` CLI or ours sends it:

- operators ``= == != < <= > >=`` and the words ``eq neq noteq gt gte lt lte in notin nin``
  (``not in`` and ``not eq`` too); a word operator has spaces around it;
- a value is a ``[a,b,...]`` list, a ``"quoted string"`` or a run of non-spaces; surrounding
  ``[``, ``]`` and ``,`` are stripped; ``in``/``notin`` split it on commas;
- ``_`` in a value stands for a space (``RTX_4090`` is ``"RTX 4090"``), quotes are dropped;
- ``true``/``false`` (either capitalised) are booleans, ``None``/``null`` is null;
- ``field=any`` (or ``?``, ``*``) removes every filter on the field, a default included;
- ``gpu_ram``, ``gpu_total_ram`` and ``cpu_ram`` are written in GB and sent in MB (x 1000);
- a later clause on the same field and operator replaces the earlier one.

Values stay text here, as the CLI sends them; the JSON parser coerces them to their field's type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gpuyard.core.errors import InvalidRequest
from gpuyard.core.offer_fields import (
    LIST_OPS,
    OFFER_FIELDS,
    TOLERATED_FILTERS,
    Op,
    canonical_field_name,
    resolve_field,
)

RawFilters = dict[str, dict[str, object]]
"""Vast's JSON filter shape: ``{"num_gpus": {"gte": "2"}}``."""

_FIELD = re.compile(r"[A-Za-z0-9_]+")
_OPERATOR = re.compile(
    r"\s*(?P<symbol>[=<>!]+)\s*"
    r"|\s+(?P<word>not\s*in|not\s*eq|notin|noteq|nin|neq|eq|in|gte|gt|lte|lt)\s+",
    re.IGNORECASE,
)
_VALUE = re.compile(r'\[[^\]]*\]|"[^"]*"|\S+')

_OPERATORS: Mapping[str, Op] = {
    "=": Op.EQ,
    "==": Op.EQ,
    "eq": Op.EQ,
    "!=": Op.NEQ,
    "neq": Op.NEQ,
    "noteq": Op.NEQ,
    ">": Op.GT,
    "gt": Op.GT,
    ">=": Op.GTE,
    "gte": Op.GTE,
    "<": Op.LT,
    "lt": Op.LT,
    "<=": Op.LTE,
    "lte": Op.LTE,
    "in": Op.IN,
    "notin": Op.NOTIN,
    "nin": Op.NOTIN,
}
_WILDCARDS = frozenset({"any", "?", "*"})
_LITERALS: Mapping[str, bool | None] = {
    "true": True,
    "True": True,
    "false": False,
    "False": False,
    "None": None,
    "null": None,
}


def scan_clauses(text: str) -> list[tuple[str, str, str]]:
    """Split a query string into ``(field, operator text, value text)`` clauses."""
    text = text.strip()
    clauses: list[tuple[str, str, str]] = []
    pos = 0
    while pos < len(text):
        field = _FIELD.match(text, pos)
        if field is None:
            raise InvalidRequest(f"expected a field name at {text[pos:]!r}", param="query")
        operator = _OPERATOR.match(text, field.end())
        if operator is None:
            raise InvalidRequest(
                f"expected an operator after {field.group()!r}; quote the whole query",
                param=field.group(),
            )
        op_text = operator.group("symbol") or operator.group("word")
        value = _VALUE.match(text, operator.end())
        if value is None:
            raise InvalidRequest(f"{field.group()}: the value is missing", param=field.group())
        clauses.append((field.group(), op_text, value.group()))
        pos = value.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return clauses


def cli_filters(text: str, *, base: Mapping[str, Mapping[str, object]] | None = None) -> RawFilters:
    """The JSON filters the ``vastai`` CLI sends for ``text``, applied on top of ``base``."""
    filters: RawFilters = {canonical_field_name(k): dict(v) for k, v in (base or {}).items()}
    for name, op_text, value_text in scan_clauses(text):
        field = canonical_field_name(name)
        if field not in OFFER_FIELDS and field not in TOLERATED_FILTERS:
            resolve_field(name)  # raises: unknown field
        op = _OPERATORS.get(re.sub(r"\s+", "", op_text.lower()))
        if op is None:
            raise InvalidRequest(f"{name}: unknown operator {op_text!r}", param=name)
        stripped = value_text.strip(",[]")
        if op in LIST_OPS:
            items = [item.strip() for item in stripped.split(",") if item.strip()]
            if not items:
                raise InvalidRequest(f"{name}: the list is empty", param=name)
            filters.setdefault(field, {})[op.value] = [_scalar(field, item, op) for item in items]
            continue
        if not stripped:
            raise InvalidRequest(f"{name}: the value is missing", param=name)
        if stripped in _WILDCARDS:
            if op is not Op.EQ:
                raise InvalidRequest(f"{name}: a wildcard only works with =", param=name)
            filters.pop(field, None)
            continue
        filters.setdefault(field, {})[op.value] = _scalar(field, stripped, op)
    return filters


def _scalar(field: str, text: str, op: Op) -> object:
    value = text.replace("_", " ").strip('"')
    spec = OFFER_FIELDS.get(field)
    if spec is not None and spec.cli_multiplier != 1.0:
        try:
            return float(value) * spec.cli_multiplier
        except ValueError:
            raise InvalidRequest(
                f"{field} must be a number of GB, got {text!r}", param=field
            ) from None
    if op not in LIST_OPS and value in _LITERALS:
        return _LITERALS[value]
    return value


def cli_order(text: str) -> list[list[str]]:
    """``"dph_total-,num_gpus"`` → ``[["dph_total", "desc"], ["num_gpus", "asc"]]``.

    A ``-`` at either end of a name means descending, a ``+`` (or nothing) ascending.
    """
    order: list[list[str]] = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            continue
        direction = "asc"
        if name.strip("-") != name:
            direction, name = "desc", name.strip("-")
        if name.strip("+") != name:
            direction, name = "asc", name.strip("+")
        order.append([canonical_field_name(name), direction])
    return order
