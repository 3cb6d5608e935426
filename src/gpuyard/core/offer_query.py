"""The offer query language: Vast's JSON filters, the CLI string syntax, and evaluation in memory.

One :class:`OfferQuery` comes out of every way of asking:

- ``POST /api/v0/bundles/`` bodies and ``GET /api/v0/bundles/?q=<json>``: :func:`parse_json_query`
  and :func:`parse_query_param`;
- the CLI string ``'gpu_name=RTX_4090 num_gpus>=2'`` with ``-o 'dph_total-'``:
  :func:`parse_cli_query` and :func:`parse_cli_order` (the same result as the JSON the ``vastai``
  CLI sends for that string);
- :func:`query_to_json` writes a query back as a Vast body.

Fields, types and wire units are listed in :mod:`gpuyard.core.offer_fields`.

Evaluation (:func:`matches`, :func:`sort_key`, :func:`apply`) works on offers as mappings of those
fields, where ``None`` (or a missing key) means the host does not report the value:

- a filter matches only an offer that reports a value satisfying it, so ``None`` never matches a
  filter, ``neq`` and ``notin`` included (as SQL's NULL): an offer of unknown country is not
  returned for ``geolocation notin [CN]``. The one way to ask about ``None`` is a null value:
  ``{"eq": null}`` matches offers that do not report the field, ``{"neq": null}`` those that do;
- ``None`` sorts last, ascending or descending; ties keep the input order.

``type`` (on-demand, bid, reserved) and ``allocated_storage`` (GiB, for pricing) are carried for
the service; they do not filter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from gpuyard.core.errors import InvalidRequest
from gpuyard.core.offer_cli_syntax import cli_filters, cli_order
from gpuyard.core.offer_fields import (
    LIST_OPS,
    ORDERED_OPS,
    TOLERATED_FILTERS,
    Comparable,
    OfferField,
    Op,
    Scalar,
    as_float,
    coerce_value,
    comparable,
    offer_value,
    resolve_field,
)

__all__ = [
    "Direction",
    "Filter",
    "OfferQuery",
    "OfferType",
    "Op",
    "OrderBy",
    "SortPart",
    "apply",
    "matches",
    "parse_cli_order",
    "parse_cli_query",
    "parse_json_query",
    "parse_query_param",
    "query_to_json",
    "sort_key",
]

FilterValue = Scalar | None | tuple[Scalar, ...]
OfferT = TypeVar("OfferT", bound=Mapping[str, object])

MAX_LISTED_VALUES = 1000
"""The most values an offer query's ``in`` and ``notin`` lists may hold in all: each is one bound
parameter of the search, and a database takes only so many in one statement (Postgres 32,767)."""

IGNORED_KEYS = frozenset({"disable_bundling"})
"""Top-level body keys the ``vastai`` CLI may send that mean nothing here."""


class Direction(StrEnum):
    ASC = "asc"
    DESC = "desc"


_DIRECTIONS = frozenset(d.value for d in Direction)


class OfferType(StrEnum):
    ON_DEMAND = "on-demand"
    BID = "bid"
    RESERVED = "reserved"


@dataclass(frozen=True, slots=True)
class Filter:
    """``field op value``; ``value`` is a tuple for ``in``/``notin`` and may be None for eq/neq."""

    field: str
    op: Op
    value: FilterValue


@dataclass(frozen=True, slots=True)
class OrderBy:
    field: str
    direction: Direction = Direction.ASC


@dataclass(frozen=True, slots=True)
class OfferQuery:
    """A parsed offer search. An empty ``order`` keeps the order the offers come in."""

    filters: tuple[Filter, ...] = ()
    order: tuple[OrderBy, ...] = ()
    limit: int | None = None
    type: OfferType = OfferType.ON_DEMAND
    allocated_storage: float | None = None


# --- parsing -----------------------------------------------------------------------------------


def parse_json_query(obj: object) -> OfferQuery:
    """Parse a Vast search body: ``{"field": {"op": value}, "order": ..., "limit": ..., ...}``.

    A bare value is ``eq`` (``{"gpu_name": "H100_SXM"}``) and a bare list is ``in``. Several
    operators on one field are several filters. ``order`` is ``[["field", "asc|desc"], ...]`` or
    a CLI order string (``"dph_total-"``). ``type`` accepts ``interruptible`` for ``bid``.
    """
    if not isinstance(obj, Mapping):
        raise InvalidRequest("the offer query must be a JSON object", param="q")
    filters: dict[tuple[str, Op], Filter] = {}
    order: tuple[OrderBy, ...] = ()
    limit: int | None = None
    offer_type = OfferType.ON_DEMAND
    storage: float | None = None
    for key, value in obj.items():
        if not isinstance(key, str):
            raise InvalidRequest("offer query keys must be strings", param="q")
        if key == "order":
            order = _parse_order(value)
        elif key == "limit":
            limit = _parse_limit(value)
        elif key == "type":
            offer_type = _parse_type(value)
        elif key == "allocated_storage":
            storage = None if value is None else _non_negative(value, "allocated_storage")
        elif key in IGNORED_KEYS or key in TOLERATED_FILTERS:
            continue
        else:
            for parsed in _parse_field_filters(key, value):
                filters[(parsed.field, parsed.op)] = parsed
    _check_listed(filters.values())
    return OfferQuery(tuple(filters.values()), order, limit, offer_type, storage)


def _check_listed(filters: Iterable[Filter]) -> None:
    sizes = [(len(f.value), f.field) for f in filters if isinstance(f.value, tuple)]
    listed = sum(size for size, _ in sizes)
    if listed > MAX_LISTED_VALUES:
        field = max(sizes)[1]
        raise InvalidRequest(
            f"{field}: the query's in/notin lists hold {listed} values; at most "
            f"{MAX_LISTED_VALUES} in all",
            param=field,
            code="too_many_values",
        )


def parse_query_param(text: str) -> OfferQuery:
    """Parse the ``q`` query parameter of ``GET /api/v0/bundles/`` (JSON text)."""
    try:
        obj = json.loads(text) if text.strip() else {}
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise InvalidRequest(f"q is not valid JSON: {exc}", param="q") from None
    return parse_json_query(obj)


def parse_cli_query(
    text: str, *, defaults: Mapping[str, Mapping[str, object]] | None = None
) -> OfferQuery:
    """Parse the CLI string syntax (see :mod:`gpuyard.core.offer_cli_syntax`) into filters.

    ``defaults`` are JSON filters the string applies on top of, as ``vastai search offers``
    applies its string to ``verified=true rentable=true``; ``verified=any`` removes one.
    """
    return parse_json_query(cli_filters(text, base=defaults))


def parse_cli_order(text: str) -> tuple[OrderBy, ...]:
    """``"dph_total-,num_gpus"``: comma-separated fields, ``-`` = descending, ``+``/none = asc."""
    return _parse_order(cli_order(text))


def _parse_field_filters(key: str, value: object) -> list[Filter]:
    spec = resolve_field(key)
    if isinstance(value, Mapping):
        ops: Mapping[object, object] = value
    elif isinstance(value, list | tuple):
        ops = {Op.IN.value: value}
    else:
        ops = {Op.EQ.value: value}
    parsed: list[Filter] = []
    for op_name, operand in ops.items():
        try:
            op = Op(str(op_name))
        except ValueError:
            allowed = " ".join(o.value for o in Op)
            raise InvalidRequest(
                f"{key}: unknown operator {op_name!r}; use one of {allowed}", param=key
            ) from None
        if op in ORDERED_OPS and not spec.numeric:
            raise InvalidRequest(f"{key}: {op} needs a numeric field", param=key)
        parsed.append(Filter(spec.name, op, _parse_operand(spec, key, op, operand)))
    return parsed


def _parse_operand(spec: OfferField, key: str, op: Op, operand: object) -> FilterValue:
    if op in LIST_OPS:
        if not isinstance(operand, list | tuple) or not operand:
            raise InvalidRequest(f"{key}: {op} needs a non-empty list", param=key)
        return tuple(coerce_value(spec, item, param=key) for item in operand)
    if operand is None:
        if op not in (Op.EQ, Op.NEQ):
            raise InvalidRequest(f"{key}: null only works with eq and neq", param=key)
        return None
    if isinstance(operand, list | tuple | Mapping):
        raise InvalidRequest(f"{key}: {op} needs a single value, not a list", param=key)
    return coerce_value(spec, operand, param=key)


def _parse_order(value: object) -> tuple[OrderBy, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return parse_cli_order(value)
    if not isinstance(value, list | tuple):
        raise InvalidRequest('order must be a list like [["dph_total", "asc"]]', param="order")
    items: list[object] = list(value)
    if len(items) == 2 and isinstance(items[0], str) and str(items[1]).lower() in _DIRECTIONS:
        items = [items]  # one flat pair: ["dph_total", "asc"]
    order: list[OrderBy] = []
    for item in items:
        if isinstance(item, str):
            order.extend(parse_cli_order(item))
            continue
        if not (isinstance(item, list | tuple) and len(item) == 2):
            raise InvalidRequest(f"order entry {item!r} is not [field, direction]", param="order")
        name, direction = item
        if not isinstance(name, str) or not isinstance(direction, str):
            raise InvalidRequest(f"order entry {item!r} is not [field, direction]", param="order")
        if direction.lower() not in _DIRECTIONS:
            raise InvalidRequest(
                f"order direction must be asc or desc, got {direction!r}", param="order"
            )
        order.append(OrderBy(resolve_field(name).name, Direction(direction.lower())))
    return tuple(order)


def _parse_limit(value: object) -> int | None:
    if value is None:
        return None
    limit: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        limit = value
    elif isinstance(value, float) and value.is_integer():
        limit = int(value)
    if limit is None or limit < 1:
        raise InvalidRequest(f"limit must be a positive integer, got {value!r}", param="limit")
    return limit


def _parse_type(value: object) -> OfferType:
    if value is None:
        return OfferType.ON_DEMAND
    if value == "interruptible":
        return OfferType.BID
    if isinstance(value, str) and value in {t.value for t in OfferType}:
        return OfferType(value)
    allowed = ", ".join(t.value for t in OfferType)
    raise InvalidRequest(f"type must be one of {allowed}, got {value!r}", param="type")


def _non_negative(value: object, param: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = as_float(value)
        if number is not None and math.isfinite(number) and number >= 0:
            return number
    raise InvalidRequest(f"{param} must be a non-negative number, got {value!r}", param=param)


def query_to_json(query: OfferQuery) -> dict[str, object]:
    """The Vast body for ``query``; :func:`parse_json_query` reads it back to an equal query."""
    filters: dict[str, dict[str, object]] = {}
    for f in query.filters:
        operand = list(f.value) if isinstance(f.value, tuple) else f.value
        filters.setdefault(f.field, {})[f.op.value] = operand
    body: dict[str, object] = dict(filters)
    body["order"] = [[o.field, o.direction.value] for o in query.order]
    body["type"] = query.type.value
    if query.limit is not None:
        body["limit"] = query.limit
    if query.allocated_storage is not None:
        body["allocated_storage"] = query.allocated_storage
    return body


# --- evaluation --------------------------------------------------------------------------------


def matches(query: OfferQuery, offer: Mapping[str, object]) -> bool:
    """Whether ``offer`` satisfies every filter of ``query`` (see the module doc for None)."""
    return all(_filter_matches(f, offer) for f in query.filters)


def _filter_matches(f: Filter, offer: Mapping[str, object]) -> bool:
    spec = resolve_field(f.field)
    actual = offer_value(spec, offer)
    if f.value is None:
        return (actual is None) == (f.op is Op.EQ)
    if actual is None:
        return False
    if isinstance(f.value, tuple):
        found = actual in {comparable(spec, v) for v in f.value}
        return found if f.op is Op.IN else not found
    wanted = comparable(spec, f.value)
    if f.op is Op.EQ:
        return actual == wanted
    if f.op is Op.NEQ:
        return actual != wanted
    if not isinstance(actual, float) or not isinstance(wanted, float):
        raise TypeError(f"{f.field}: {f.op} compares numbers")
    if f.op is Op.GT:
        return actual > wanted
    if f.op is Op.GTE:
        return actual >= wanted
    if f.op is Op.LT:
        return actual < wanted
    return actual <= wanted


@dataclass(frozen=True, slots=True)
class SortPart:
    """One field's place in a sort key: ``None`` after every value, in either direction."""

    value: Comparable | None
    descending: bool

    def __lt__(self, other: SortPart) -> bool:
        if self.value is None or other.value is None:
            return self.value is not None and other.value is None
        if self.descending:
            return _less(other.value, self.value)
        return _less(self.value, other.value)


def _less(a: Comparable, b: Comparable) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a < b
    if isinstance(a, float) and isinstance(b, float):
        return a < b
    raise TypeError(f"cannot order {a!r} and {b!r}")


def sort_key(query: OfferQuery, offer: Mapping[str, object]) -> tuple[SortPart, ...]:
    """The key that puts offers in ``query.order``; use it with a stable sort."""
    return tuple(
        SortPart(offer_value(resolve_field(o.field), offer), o.direction is Direction.DESC)
        for o in query.order
    )


def apply(query: OfferQuery, offers: Iterable[OfferT]) -> list[OfferT]:
    """The offers that match, in the query's order (ties in input order), at most ``limit``."""
    found = [offer for offer in offers if matches(query, offer)]
    if query.order:
        found.sort(key=lambda offer: sort_key(query, offer))
    return found if query.limit is None else found[: query.limit]
