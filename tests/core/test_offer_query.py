import copy
import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vastai.api import offers as vast_offers
from vastai.api.query import offers_alias, offers_fields, offers_mult, parse_order, parse_query

from gpuyard.core.errors import InvalidRequest
from gpuyard.core.offer_fields import OFFER_FIELDS, FieldKind
from gpuyard.core.offer_query import (
    MAX_LISTED_VALUES,
    Direction,
    Filter,
    OfferQuery,
    OfferType,
    Op,
    OrderBy,
    apply,
    matches,
    parse_cli_order,
    parse_cli_query,
    parse_json_query,
    parse_query_param,
    query_to_json,
    sort_key,
)

VAST_CLI_DEFAULTS = {"verified": {"eq": True}, "external": {"eq": False}, "rentable": {"eq": True}}


def vastai_json(text: str, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the installed ``vastai`` CLI puts in its search body for ``text``."""
    body: dict[str, Any] = parse_query(
        text, copy.deepcopy(dict(base or {})), offers_fields, offers_alias, offers_mult
    )
    return body


# --- the CLI string means what vastai sends ----------------------------------------------------

CLI_STRINGS = [
    "gpu_name=RTX_4090 num_gpus>=2 geolocation in [TW,SE]",
    "reliability > 0.98 num_gpus=1 gpu_name=RTX_3090",
    "reliability>0.99 num_gpus=4 geolocation in [TW,SE]",
    'reliability>0.99 gpu_name in ["RTX 4090", "RTX 3090"] geolocation notin [CN,VN]',
    "disk_space>146 gpu_ram>10 cuda_vers>=12.1 direct_port_count>=2",
    "reliability > 0.99  num_gpus>=4 verified=False",
    "compute_cap > 610 dph<2.5",
    'gpu_name="RTX_4090" cpu_ram>=64 gpu_total_ram<=96.5',
    "num_gpus>=2 num_gpus>=4",
    "num_gpus gte 2 dph_total lte 1.5 geolocation nin [CN] inet_down gt 100 score lt 50",
    "gpu_name eq H100_SXM host_id neq 7 machine_id in [302,402] id!=5",
    "geolocation not in [CN,VN] inet_up>=10.5",
    "rented=false external=true rentable=True",
    "cuda_vers>=12 cuda_max_good<13 dlperf>=20",
    "cpu_cores>=8, disk_space>=100",
    "verified=any num_gpus==8",
    "gpu_name=any",
    "",
]


@pytest.mark.parametrize("text", CLI_STRINGS)
def test_cli_string_parses_like_the_vastai_cli_body(text: str) -> None:
    assert parse_cli_query(text) == parse_json_query(vastai_json(text))


@pytest.mark.parametrize(
    "text", ["verified=any num_gpus=2", "gpu_name=RTX_4090", "rentable=false verified=False", ""]
)
def test_cli_string_over_defaults_parses_like_the_vastai_cli_body(text: str) -> None:
    ours = parse_cli_query(text, defaults=VAST_CLI_DEFAULTS)
    assert ours == parse_json_query(vastai_json(text, VAST_CLI_DEFAULTS))


def test_wildcard_drops_a_default_filter() -> None:
    query = parse_cli_query("verified=any", defaults=VAST_CLI_DEFAULTS)
    assert query.filters == (Filter("rentable", Op.EQ, True),)


@pytest.mark.parametrize(
    "text", ["dph_total-", "score-", "num_gpus,dph-", "+dlperf, -reliability", "cuda_vers+", ""]
)
def test_cli_order_parses_like_vastai(text: str) -> None:
    assert parse_cli_order(text) == parse_json_query({"order": parse_order(text)}).order


def test_cli_order_directions() -> None:
    assert parse_cli_order("dph_total-,num_gpus,score+") == (
        OrderBy("dph_total", Direction.DESC),
        OrderBy("num_gpus", Direction.ASC),
        OrderBy("score", Direction.ASC),
    )


class _CapturingClient:
    def __init__(self) -> None:
        self.bodies: list[Any] = []

    def post(self, subpath: str, query_args: Any = None, json_data: Any = None, **_: Any) -> Any:
        self.bodies.append(json_data)
        return self

    def raise_for_status(self) -> None:
        pass

    def json(self) -> dict[str, list[Any]]:
        return {"offers": []}


def test_the_body_the_vastai_sdk_sends_parses() -> None:
    client = _CapturingClient()
    query = vastai_json("gpu_name=RTX_4090 num_gpus>=2")
    vast_offers.search_offers(
        client,
        query=query,
        offer_type="interruptible",
        order=parse_order("dph_total-"),
        limit=7,
        storage=20.0,
        disable_bundling=True,
    )
    (body,) = client.bodies
    parsed = parse_json_query(json.loads(json.dumps(body)))
    assert parsed == OfferQuery(
        filters=(
            Filter("verified", Op.EQ, True),
            Filter("rentable", Op.EQ, True),
            Filter("rented", Op.EQ, False),
            Filter("gpu_name", Op.EQ, "RTX 4090"),
            Filter("num_gpus", Op.GTE, 2),
        ),
        order=(OrderBy("dph_total", Direction.DESC),),
        limit=7,
        type=OfferType.BID,
        allocated_storage=20.0,
    )


# --- JSON parsing ------------------------------------------------------------------------------


def test_bare_value_is_eq_and_gpu_name_is_canonical() -> None:
    query = parse_json_query({"gpu_name": "H100_SXM"})
    assert query.filters == (Filter("gpu_name", Op.EQ, "H100 SXM"),)
    assert query.type is OfferType.ON_DEMAND
    assert query.order == ()
    assert query.limit is None


def test_query_param_is_json_text() -> None:
    assert parse_query_param('{"gpu_name": "H100_SXM"}') == parse_json_query(
        {"gpu_name": "H100 SXM"}
    )
    assert parse_query_param("") == OfferQuery()


def test_bare_list_is_in_and_several_ops_are_several_filters() -> None:
    query = parse_json_query({"geolocation": ["TW", "SE"], "num_gpus": {"gte": 2, "lte": "4"}})
    assert query.filters == (
        Filter("geolocation", Op.IN, ("TW", "SE")),
        Filter("num_gpus", Op.GTE, 2),
        Filter("num_gpus", Op.LTE, 4),
    )


@pytest.mark.parametrize(
    ("field", "given", "coerced"),
    [
        ("num_gpus", "2", 2),
        ("num_gpus", 2.0, 2),
        ("num_gpus", " 8 ", 8),
        ("reliability", "0.98", 0.98),
        ("dph_total", 1, 1.0),
        ("verified", "true", True),
        ("verified", "False", False),
        ("rentable", 1, True),
        ("geolocation", " TW ", "TW"),
        ("gpu_name", "rtx-4090", "RTX 4090"),
    ],
)
def test_values_are_coerced_to_the_field_type(field: str, given: object, coerced: object) -> None:
    (parsed,) = parse_json_query({field: {"eq": given}}).filters
    assert parsed.value == coerced
    assert type(parsed.value) is type(coerced)


def test_order_limit_type_and_storage() -> None:
    query = parse_json_query(
        {
            "order": [["dph", "asc"], ["score", "DESC"]],
            "limit": 10,
            "type": "reserved",
            "allocated_storage": 5,
            "disable_bundling": True,
            "external": {"eq": False},
        }
    )
    assert query == OfferQuery(
        order=(OrderBy("dph_total", Direction.ASC), OrderBy("score", Direction.DESC)),
        limit=10,
        type=OfferType.RESERVED,
        allocated_storage=5.0,
    )


@pytest.mark.parametrize(
    "order", ["dph_total-", ["dph_total", "desc"], [["dph_total", "desc"]], ["dph_total-"]]
)
def test_order_spellings(order: object) -> None:
    assert parse_json_query({"order": order}).order == (OrderBy("dph_total", Direction.DESC),)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"gpu_nam": "RTX 4090"}, "gpu_nam"),
        ({"num_gpus": {"ge": 2}}, "num_gpus"),
        ({"num_gpus": {"gte": "two"}}, "num_gpus"),
        ({"num_gpus": {"gte": 1.5}}, "num_gpus"),
        ({"num_gpus": {"gte": True}}, "num_gpus"),
        ({"reliability": {"gt": "nan"}}, "reliability"),
        ({"verified": {"eq": "maybe"}}, "verified"),
        ({"gpu_name": {"eq": 4090}}, "gpu_name"),
        ({"gpu_name": {"eq": "  "}}, "gpu_name"),
        ({"geolocation": {"gt": "SE"}}, "geolocation"),
        ({"verified": {"lt": True}}, "verified"),
        ({"geolocation": {"in": "TW"}}, "geolocation"),
        ({"geolocation": {"in": []}}, "geolocation"),
        ({"num_gpus": {"eq": [1, 2]}}, "num_gpus"),
        ({"num_gpus": {"gte": None}}, "num_gpus"),
        ({"order": [["dph_total", "up"]]}, "order"),
        ({"order": [["price", "asc"]]}, "price"),
        ({"order": 5}, "order"),
        ({"order": [["dph_total"]]}, "order"),
        ({"limit": 0}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"limit": True}, "limit"),
        ({"type": "spot"}, "type"),
        ({"allocated_storage": -1}, "allocated_storage"),
        ({"geolocation": {"in": ["TW", "\x00"]}}, "geolocation"),  # no database holds a NUL
        ({"gpu_name": "RTX\ud800"}, "gpu_name"),  # nor a lone surrogate
    ],
)
def test_bad_json_queries_name_the_field(body: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_json_query(body)
    assert caught.value.param == param
    assert caught.value.code == "invalid_request"


def test_in_lists_hold_a_bounded_number_of_values_in_all() -> None:
    at_limit = {"machine_id": {"in": list(range(MAX_LISTED_VALUES - 1))}, "geolocation": ["TW"]}
    assert len(parse_json_query(at_limit).filters) == 2
    over = {**at_limit, "host_id": {"notin": [1, 2]}}
    with pytest.raises(InvalidRequest) as caught:
        parse_json_query(over)
    assert (caught.value.code, caught.value.param) == ("too_many_values", "machine_id")
    assert f"hold {MAX_LISTED_VALUES + 2} values" in caught.value.message


@pytest.mark.parametrize("body", [[], "gpu_name=RTX_4090", None])
def test_a_query_must_be_an_object(body: object) -> None:
    with pytest.raises(InvalidRequest):
        parse_json_query(body)


def test_bad_json_text_is_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_query_param("{not json")
    assert caught.value.param == "q"


@pytest.mark.parametrize(
    ("text", "param"),
    [
        ("gpu_name=RTX 4090", "4090"),
        ("num_gpus=>2", "num_gpus"),
        ("num_gpus=", "num_gpus"),
        ("foo=1", "foo"),
        ("num_gpus>any", "num_gpus"),
        ("gpu_ram>abc", "gpu_ram"),
        ("geolocation in []", "geolocation"),
        ("num_gpus>=two", "num_gpus"),
        ("=2", "query"),
    ],
)
def test_bad_cli_strings_name_the_field(text: str, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_cli_query(text)
    assert caught.value.param == param


def test_cli_ram_fields_are_gb_sent_as_mb() -> None:
    (ram,) = parse_cli_query("gpu_ram>=24").filters
    assert ram == Filter("gpu_ram", Op.GTE, 24000.0)
    (listed,) = parse_cli_query("cpu_ram in [32,64]").filters
    assert listed == Filter("cpu_ram", Op.IN, (32000.0, 64000.0))
    assert matches(parse_cli_query("gpu_ram>=24"), {"gpu_ram": 24576})
    assert not matches(parse_cli_query("gpu_ram>=24"), {"gpu_ram": 16384})


# --- evaluation --------------------------------------------------------------------------------


def test_gpu_name_matches_by_key() -> None:
    query = parse_cli_query("gpu_name=RTX_4090")
    assert matches(query, {"gpu_name": "RTX 4090"})
    assert matches(query, {"gpu_name": "NVIDIA GeForce RTX 4090"})
    assert not matches(query, {"gpu_name": "RTX 3090"})
    assert matches(parse_json_query({"gpu_name": "H100_SXM"}), {"gpu_name": "H100 SXM"})


def test_geolocation_compares_the_country_code() -> None:
    query = parse_cli_query("geolocation in [tw,SE]")
    assert matches(query, {"geolocation": "Taiwan, TW"})
    assert matches(query, {"geolocation": "se"})
    assert not matches(query, {"geolocation": "US"})


@pytest.mark.parametrize(
    ("text", "offer", "expected"),
    [
        ("num_gpus>=2", {"num_gpus": 2}, True),
        ("num_gpus>2", {"num_gpus": 2}, False),
        ("num_gpus<2", {"num_gpus": 1}, True),
        ("num_gpus<=1", {"num_gpus": 2}, False),
        ("num_gpus!=2", {"num_gpus": 3}, True),
        ("num_gpus in [1,2]", {"num_gpus": 2}, True),
        ("num_gpus notin [1,2]", {"num_gpus": 2}, False),
        ("dph_total<0.5", {"dph_total": 0.49}, True),
        ("verified=true", {"verified": True}, True),
        ("verified=true", {"verified": False}, False),
        ("rented!=true", {"rented": False}, True),
    ],
)
def test_comparisons(text: str, offer: dict[str, object], expected: bool) -> None:
    assert matches(parse_cli_query(text), offer) is expected


@pytest.mark.parametrize(
    "text",
    ["num_gpus=2", "num_gpus!=2", "num_gpus>0", "geolocation notin [CN]", "verified=false"],
)
@pytest.mark.parametrize("offer", [{}, {"num_gpus": None, "geolocation": None, "verified": None}])
def test_an_unreported_value_matches_no_filter(text: str, offer: dict[str, object]) -> None:
    assert not matches(parse_cli_query(text), offer)


def test_null_filters_ask_whether_the_value_is_reported() -> None:
    is_null = parse_json_query({"geolocation": {"eq": None}})
    not_null = parse_cli_query("geolocation!=null")
    assert matches(is_null, {}) and matches(is_null, {"geolocation": None})
    assert not matches(is_null, {"geolocation": "SE"})
    assert matches(not_null, {"geolocation": "SE"}) and not matches(not_null, {})


def test_an_offer_value_of_the_wrong_type_is_a_bug() -> None:
    with pytest.raises(TypeError):
        matches(parse_cli_query("num_gpus>=1"), {"num_gpus": "2"})


OFFERS: list[dict[str, object]] = [
    {"id": 1, "dph_total": 0.5, "num_gpus": 1, "gpu_name": "RTX 4090", "score": 3.0},
    {"id": 2, "dph_total": None, "num_gpus": 2, "gpu_name": "RTX 4090", "score": 1.0},
    {"id": 3, "dph_total": 0.2, "num_gpus": 2, "gpu_name": "RTX 3090", "score": None},
    {"id": 4, "dph_total": 0.5, "num_gpus": 4, "gpu_name": "rtx_4090", "score": 2.0},
]


def _ids(offers: list[dict[str, object]]) -> list[object]:
    return [offer["id"] for offer in offers]


def test_apply_orders_with_none_last_both_ways_and_keeps_ties_stable() -> None:
    asc = OfferQuery(order=parse_cli_order("dph_total"))
    desc = OfferQuery(order=parse_cli_order("dph_total-"))
    assert _ids(apply(asc, OFFERS)) == [3, 1, 4, 2]
    assert _ids(apply(desc, OFFERS)) == [1, 4, 3, 2]
    assert _ids(apply(OfferQuery(order=parse_cli_order("score-")), OFFERS)) == [1, 4, 2, 3]


def test_apply_filters_sorts_on_several_keys_and_limits() -> None:
    query = parse_json_query(
        {"gpu_name": {"eq": "RTX_4090"}, "order": [["dph_total", "asc"], ["num_gpus", "desc"]]}
    )
    assert _ids(apply(query, OFFERS)) == [4, 1, 2]
    limited = parse_json_query({"gpu_name": "RTX_4090", "order": "dph_total", "limit": 2})
    assert _ids(apply(limited, OFFERS)) == [1, 4]  # a tie keeps input order
    assert _ids(apply(OfferQuery(), OFFERS)) == [1, 2, 3, 4]


def test_sort_key_orders_strings_by_gpu_key() -> None:
    query = OfferQuery(order=(OrderBy("gpu_name", Direction.DESC),))
    ordered = sorted(OFFERS, key=lambda offer: sort_key(query, offer))
    assert [offer["gpu_name"] for offer in ordered][-1] == "RTX 3090"


# --- properties --------------------------------------------------------------------------------

_GPU_NAMES = ["RTX_4090", "RTX_3090", "H100_SXM", "A100_PCIE", "L40S", "RTX_A6000"]
_COUNTRIES = ["TW", "SE", "US", "CN", "DE"]
_SYMBOLS = ["=", "==", "!=", "<", "<=", ">", ">="]


def _cli_value(kind: FieldKind, name: str) -> st.SearchStrategy[str]:
    if kind is FieldKind.BOOL:
        return st.sampled_from(["true", "false", "True", "False"])
    if name == "gpu_name":
        return st.sampled_from(_GPU_NAMES)
    if kind is FieldKind.STR:
        return st.sampled_from(_COUNTRIES)
    if kind is FieldKind.INT:
        return st.integers(0, 10_000).map(str)
    return st.decimals(0, 1000, places=2, allow_nan=False).map(str)


@st.composite
def _cli_clause(draw: st.DrawFn) -> str:
    spec = draw(st.sampled_from(sorted(OFFER_FIELDS.values(), key=lambda s: s.name)))
    value = _cli_value(spec.kind, spec.name)
    if draw(st.booleans()) and spec.cli_multiplier == 1.0:  # vastai fails on `gpu_ram in [..]`
        word = draw(st.sampled_from(["in", "notin", "nin"]))
        items = draw(st.lists(value, min_size=1, max_size=3))
        return f"{spec.name} {word} [{','.join(items)}]"
    symbols = _SYMBOLS if spec.numeric else ["=", "!="]
    return f"{spec.name}{draw(st.sampled_from(symbols))}{draw(value)}"


@given(st.lists(_cli_clause(), max_size=6))
def test_generated_cli_strings_parse_like_vastai(clauses: list[str]) -> None:
    text = " ".join(clauses)
    assert parse_cli_query(text) == parse_json_query(vastai_json(text))


@st.composite
def _queries(draw: st.DrawFn) -> OfferQuery:
    text = " ".join(draw(st.lists(_cli_clause(), max_size=5)))
    names = st.sampled_from(sorted(OFFER_FIELDS))
    order = tuple(
        OrderBy(name, draw(st.sampled_from(list(Direction))))
        for name in draw(st.lists(names, max_size=3))
    )
    limit = draw(st.none() | st.integers(1, 50))
    offer_type = draw(st.sampled_from(list(OfferType)))
    storage = draw(st.none() | st.floats(0, 1000))
    filters = parse_cli_query(text).filters
    return OfferQuery(filters, order, limit, offer_type, storage)


@given(_queries())
def test_query_to_json_round_trips(query: OfferQuery) -> None:
    body = json.loads(json.dumps(query_to_json(query)))
    assert parse_json_query(body) == query


_offers = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.integers(1, 100),
            "num_gpus": st.none() | st.integers(1, 8),
            "dph_total": st.none() | st.floats(0, 10),
            "gpu_name": st.none() | st.sampled_from(["RTX 4090", "H100 SXM", "RTX 3090"]),
            "geolocation": st.none() | st.sampled_from(_COUNTRIES),
            "verified": st.none() | st.booleans(),
        }
    ),
    max_size=12,
)


@given(_queries(), _offers)
def test_apply_returns_matching_offers_in_order(query: OfferQuery, offers: list[Any]) -> None:
    result = apply(query, offers)
    wanted = [offer for offer in offers if matches(query, offer)]
    assert len(result) == (len(wanted) if query.limit is None else min(query.limit, len(wanted)))
    assert all(any(o is r for o in wanted) for r in result)
    keys = [sort_key(query, offer) for offer in result]
    assert all(not keys[i + 1] < keys[i] for i in range(len(keys) - 1))


@given(_queries())
def test_an_offer_reporting_nothing_matches_only_a_query_without_filters(query: OfferQuery) -> None:
    assert matches(query, {}) is (not query.filters)
