"""Property: the query parameters that carry JSON never answer 5xx, on SQLite and on Postgres,
and an offer search the server accepts answers exactly what the offer query language says.

The parameters: ``q`` of ``GET /api/v0/bundles/`` and of ``GET /v1/orgs/{org}/offers``, the body
of ``POST /api/v0/bundles/`` (the same query as JSON text), and ``select_filters``, ``order_by``
and ``after_token`` (base64 of JSON) of ``GET /api/v1/instances/``. Hypothesis writes queries
shaped like the real ones (known fields and operators, ``order``, ``limit``, ``type``) whose
values are drawn from what breaks parsers and databases: NUL and lone surrogates (sent as JSON
escapes, which the request's own text check cannot see in a query), integers past 64 bits and
past any float, NaN and infinities, long text, lists past the bound-parameter limits, JSON nested
too deep, truncated JSON and JSON of the wrong shape.

Every response is checked as in test_property.py (below 500, ``X-Request-Id``, the error envelope
of its dialect). A search ``POST /api/v0/bundles/`` accepts must answer the offers that
``core.offer_query.matches`` selects from all of them (the SQL translation and the in-memory
evaluator agree), at most ``limit`` of them.

The requests are synchronous (httpx), so they run in a worker thread while the event loop serves
the app.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gpuyard.core.errors import InvalidRequest
from gpuyard.core.offer_fields import (
    FIELD_ALIASES,
    OFFER_FIELDS,
    TOLERATED_FILTERS,
    FieldKind,
    Op,
)
from gpuyard.core.offer_query import IGNORED_KEYS, matches, parse_json_query
from gpuyard.server.services.offers import DEFAULT_LIMIT
from tests.harness import Api
from tests.server.market import join_host
from tests.server.test_property import check_response

EXAMPLES = 80

QUERY_KEYS = sorted(
    {*OFFER_FIELDS, *FIELD_ALIASES, *TOLERATED_FILTERS, *IGNORED_KEYS}
    | {"order", "limit", "type", "allocated_storage"}
)
INSTANCE_COLUMNS = ["id", "label", "actual_status", "gpu_name", "num_gpus", "dph_total", "ports"]
OPS = [op.value for op in Op]

NASTY_TEXT = [
    "\x00",
    "TW\x00",
    "\ud800",
    "a\udfffb",
    "x" * 5000,
    "",
    " ",
    "9" * 40,
    "1e999",
    "NaN",
    "true",
    "' OR '1'='1",
    "%_\\",
    "\u2028",
    "RTX 4090",
    "RTX_4090",
    "rtx-4090",
    "Taiwan, TW",
    "SE",
    "asc",
    "desc",
    "dph_total-",
    "interruptible",
    "9999-12-31T23:59:59-14:00",
]
NASTY_NUMBERS = [0, 1, 2, -1, 2**31, 2**63, -(2**63) - 1, 10**40, 10**400, 0.5, 1e308, -0.0]

texts = st.sampled_from(NASTY_TEXT) | st.text(max_size=12)
numbers = (
    st.sampled_from(NASTY_NUMBERS)
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
)
scalars = st.none() | st.booleans() | numbers | texts
long_lists = st.integers(0, 1200).map(lambda n: list(range(n)))  # around the list bound
operands = scalars | st.lists(scalars, max_size=5) | long_lists
filters = operands | st.dictionaries(
    st.sampled_from(OPS) | st.text(max_size=5), operands, max_size=3
)
orders = st.one_of(
    st.lists(
        st.tuples(st.sampled_from(QUERY_KEYS), st.sampled_from(["asc", "desc", "up"])), max_size=3
    ),
    st.sampled_from(["dph_total-", "num_gpus,dph_total-", "nope-"]),
    operands,
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3)
)
PLAUSIBLE_TEXT = {
    "gpu_name": ["RTX 4090", "RTX_4090", "rtx-4090", "A100", "a100", "H100 SXM"],
    "geolocation": ["TW", "tw", "SE", "Taiwan, TW", "US"],
    "verification": ["verified", "unverified", "Verified"],
}


@st.composite
def plausible_filter(draw: st.DrawFn, offers: list[dict[str, Any]]) -> tuple[str, Any]:
    """A well-formed filter on a real field, its values often those of the offers themselves
    (boundaries), so that many searches are accepted and compared."""
    reported = sorted(n for n, f in OFFER_FIELDS.items() if f.reported)
    name = draw(st.sampled_from(reported) | st.sampled_from(sorted(OFFER_FIELDS)))
    spec = OFFER_FIELDS[name]
    seen = sorted({o[name] for o in offers if o.get(name) is not None}, key=repr)
    if spec.kind is FieldKind.BOOL:
        value: st.SearchStrategy[Any] = st.booleans()
    elif spec.kind is FieldKind.STR:
        value = st.sampled_from(PLAUSIBLE_TEXT.get(name, ["x"]) + [str(v) for v in seen])
    else:
        value = st.integers(0, 200_000) | st.floats(0, 200, allow_nan=False)
        if seen:
            value = st.sampled_from(seen) | st.sampled_from(seen) | value
    ops = OPS if spec.numeric else ["eq", "neq", "in", "notin"]
    op = draw(st.sampled_from(ops))
    if op in ("in", "notin"):
        return name, {op: draw(st.lists(value, min_size=1, max_size=4))}
    if op in ("eq", "neq") and draw(st.integers(0, 9)) == 0:
        return name, {op: None}
    bare = op == "eq" and draw(st.booleans())  # {"num_gpus": 2} is eq
    return name, (draw(value) if bare else {op: draw(value)})


def plausible_queries(offers: list[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    extras = st.fixed_dictionaries(
        {},
        optional={
            "limit": st.integers(1, 20),
            "order": st.sampled_from(["dph_total-", "num_gpus", [["gpu_ram", "desc"]]]),
        },
    )
    return st.tuples(st.lists(plausible_filter(offers), max_size=4), extras).map(
        lambda pair: {**dict(pair[0]), **pair[1]}
    )


odd_queries = st.one_of(
    st.dictionaries(st.sampled_from(QUERY_KEYS) | texts, filters, max_size=4),
    st.fixed_dictionaries({}, optional={"order": orders, "limit": numbers | scalars}).flatmap(
        lambda base: st.dictionaries(st.sampled_from(QUERY_KEYS), filters, max_size=3).map(
            lambda more: {**more, **base}
        )
    ),
    json_values,
)
instance_filters = st.one_of(
    st.dictionaries(st.sampled_from(INSTANCE_COLUMNS) | texts, filters, max_size=3), json_values
)
instance_orders = st.one_of(
    st.lists(
        st.fixed_dictionaries(
            {
                "col": st.sampled_from(INSTANCE_COLUMNS) | texts,
                "dir": st.sampled_from(["asc", "desc"]) | texts,
            }
        ),
        max_size=3,
    ),
    json_values,
)


@st.composite
def json_text(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> tuple[Any, str]:
    """A value and JSON text for it: escaped, raw, truncated, or nested too deep."""
    value = draw(values)
    escaped = json.dumps(value)
    form = draw(st.sampled_from(["escaped"] * 5 + ["raw", "truncated", "deep"]))
    if form == "raw":
        raw = json.dumps(value, ensure_ascii=False)
        return value, raw if _fits_a_url(raw) else escaped
    if form == "truncated":
        return value, escaped[: draw(st.integers(0, max(0, len(escaped) - 1)))]
    if form == "deep":
        return value, "[" * 2000 + escaped + "]" * 2000
    return value, escaped


def _fits_a_url(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8
        return False
    return True


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)


class Prober:
    def __init__(self, base_url: str, key: str, org_id: str) -> None:
        self.client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"})
        self.org_id = org_id
        self.cases = 0
        self.compared = 0
        everything = self.client.post("/api/v0/bundles/", json={"limit": 1000})
        assert everything.status_code == 200, everything.text
        self.offers: list[dict[str, Any]] = everything.json()["offers"]
        assert len({o["machine_id"] for o in self.offers}) >= 2, self.offers

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        r = self.client.request(method, path, timeout=60, **kwargs)
        shown = {k: (str(v)[:300]) for k, v in kwargs.items()}
        check_response(method, str(r.url), r.status_code, dict(r.headers), r.content, f"{shown} ")
        self.cases += 1
        return r

    def search_by_body(self, value: Any, text: str) -> None:
        body = text.encode("utf-8", "surrogatepass")
        r = self.send(
            "POST", "/api/v0/bundles/", content=body, headers={"Content-Type": "application/json"}
        )
        if r.status_code == 200 and text == json.dumps(value):
            self.agrees_with_the_language(value, r.json()["offers"])

    def agrees_with_the_language(self, value: Any, answered: list[dict[str, Any]]) -> None:
        """An accepted search: the language accepts it too, and they select the same offers.
        (A body of ``null`` is no query at all, as the ``vastai`` SDK may send.)"""
        try:
            query = parse_json_query({} if value is None else value)
        except InvalidRequest as exc:
            raise AssertionError(
                f"the server accepted {value!r:.300}; the language: {exc}"
            ) from None
        selected = {o["id"] for o in self.offers if matches(query, o)}
        limit = DEFAULT_LIMIT if query.limit is None else query.limit
        got = [o["id"] for o in answered]
        assert len(got) == len(set(got)), f"an offer twice for {value!r:.300}"
        assert set(got) <= selected, f"{value!r:.300}: {set(got) - selected} do not match"
        assert len(got) == min(limit, len(selected)), f"{value!r:.300}: {got} of {selected}"
        self.compared += 1


async def test_query_parameters_carrying_json_never_answer_5xx(api: Api) -> None:
    for name, gpus, place in (
        ("tw", [("RTX 4090", 24564)] * 2, "Taiwan, TW"),
        ("se", [("A100", 81920)] * 4, "SE"),
    ):
        host = await join_host(api, gpus, name=name, cpu_cores=16 * len(gpus))
        patch = {"geolocation": place, "verified": name == "tw"}
        r = await api.client.patch(f"/v1/admin/hosts/{host.host_id}", json=patch)
        assert r.status_code == 200, r.text
    t = await api.tenant()
    offers = (await t.client.get(f"/v1/orgs/{t.org_id}/offers")).json()["data"]
    for offer in offers[:2]:  # instances for the instance listing to filter and order
        vm = await t.client.post(
            f"/v1/orgs/{t.org_id}/vms",
            json={"offer_id": offer["id"], "image": "busybox", "label": offer["gpu_name"]},
        )
        assert vm.status_code == 201, vm.text

    def probe() -> Prober:
        prober = Prober(api.base_url, t.key, t.org_id)

        plausible = plausible_queries(prober.offers)

        @FUZZ
        @given(query=json_text(st.one_of(plausible, plausible, plausible, odd_queries)))
        def offer_searches(query: tuple[Any, str]) -> None:
            value, text = query
            prober.send("GET", "/api/v0/bundles/", params={"q": text})
            prober.send("GET", f"/v1/orgs/{t.org_id}/offers", params={"q": text})
            prober.search_by_body(value, text)

        @FUZZ
        @given(
            filters=json_text(instance_filters),
            order=json_text(instance_orders),
            token=json_text(json_values),
        )
        def instance_listing(
            filters: tuple[Any, str], order: tuple[Any, str], token: tuple[Any, str]
        ) -> None:
            after = base64.urlsafe_b64encode(token[1].encode("utf-8", "surrogatepass")).decode()
            for params in (
                {"select_filters": filters[1]},
                {"order_by": order[1]},
                {"after_token": after.rstrip("=")},
                {"select_filters": filters[1], "order_by": order[1], "limit": "1"},
            ):
                prober.send("GET", "/api/v1/instances/", params=params)

        try:
            offer_searches()
            instance_listing()
        finally:
            prober.client.close()
        return prober

    prober = await asyncio.to_thread(probe)
    assert prober.cases >= EXAMPLES * 7
    assert prober.compared >= 5, "too few accepted searches to compare with the language"
