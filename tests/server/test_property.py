"""Property: no route answers 5xx to generated input, on SQLite and on Postgres.

Every operation in the app's OpenAPI document is driven by schemathesis-generated cases (valid and,
where the schema allows it, invalid path and query parameters and bodies), sent to the real server
on loopback as the operator and as a customer; path ids are either generated or taken from ids the
API has returned, so that requests reach past the 404s. A second pass sends raw bytes (non-UTF-8,
truncated or malformed JSON, odd content types) as the body of every POST, PATCH and PUT route.

Every response must be below 500, carry ``X-Request-Id``, and when it is an error, be JSON in the
error envelope of its dialect. Failures of all operations are gathered and reported together.

The schemathesis and httpx calls are synchronous, so each pass runs in a worker thread while the
event loop keeps serving the app.

A third kind of request comes from each operation's first accepted (2xx) request: it is replayed
with one path parameter, body field or query value at a time set to a nasty value (NUL, a lone
surrogate, over-long text, 64-bit overflows, JSON nested too deep, a wrong type), which random
generation rarely hits but databases and parsers choke on.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from gpuyard.core.principal import Scope
from gpuyard.server.db import write_session
from gpuyard.server.errors import error_body
from gpuyard.server.services import api_keys
from tests.harness import Api

pytestmark = pytest.mark.slow  # tens of seconds a test: scheduled first (tests/conftest.py)

EXAMPLES_PER_OPERATION = 15
BYTE_EXAMPLES_PER_OPERATION = 12
BODY_METHODS = ("POST", "PATCH", "PUT")
ID_RE = re.compile(r"^[a-z]+_[A-Za-z0-9]{8,40}$")
MISSING_ORG = "org_00000000000000000000"
# uvicorn answers a request it cannot parse (a request line of more than about 64 KiB, say)
# itself, before the app, in plain text.
UVICORN_REFUSAL = b"Invalid HTTP request received."

FUZZ = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    report_multiple_bugs=False,
)


@dataclass(frozen=True)
class Caller:
    name: str
    key: str
    org_id: str
    other_org_id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class Fuzzer:
    """Runs in a worker thread: sends generated requests, keeps the ids the API hands out (to aim
    path parameters at real rows), and gathers the failures of every operation.

    It first builds a small world through the API itself: two registered hosts (so offers exist),
    and for the customer an SSH key, an instance and a cluster before each operation. The callers
    are checked before each operation and replaced when the fuzzer has revoked a key or suspended
    the org. Operator keys are minted below the API (``mint``), so no revocation the fuzzer makes
    can lock the setup out.
    """

    def __init__(self, base_url: str, operator_org: str, mint: Callable[[], str]) -> None:
        self.base_url = base_url
        self.operator_org = operator_org
        self.mint = mint
        self.client = httpx.Client(base_url=base_url, timeout=30)
        self.admin_key = mint()
        self.ids: dict[str, None] = {}  # ordered: the newest last
        self.numbers: dict[str, None] = {}
        self.examples: dict[tuple[str, str], dict[str, Any]] = {}
        self.failures: list[str] = []
        self.cases = 0
        self._callers: list[Caller] = []
        self._host_key = self._seed_host()
        self._seed_host()

    def close(self) -> None:
        self.client.close()

    def callers_for(self, path: str) -> list[Caller]:
        """The operator and a customer (and a host, on the agent protocol), with a fresh world."""
        if not self._healthy(self.admin_key):
            self.admin_key = self.mint()
        if not self._callers or not all(self._healthy(c.key) for c in self._callers):
            self._callers = self._new_callers()
        self._seed_tenant(self._callers[1])
        if path.startswith("/v1/agent/") and self._host_key:
            return [*self._callers, Caller("host", self._host_key, "", "")]
        return self._callers

    def _healthy(self, key: str) -> bool:
        me = self.client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
        return me.status_code == 200

    def _new_callers(self) -> list[Caller]:
        org = self._send("POST", "/v1/admin/orgs", {"name": "Fuzzed"})
        tenant_key = self._send(
            "POST", f"/v1/admin/orgs/{org['id']}/api-keys", {"name": "k", "scopes": ["org:write"]}
        )
        return [
            Caller("operator", self.mint(), self.operator_org, org["id"]),
            Caller("tenant", tenant_key["key"], org["id"], self.operator_org),
        ]

    def _seed_host(self) -> str | None:
        """Register a host with many GPUs through the agent protocol; its credential."""
        token = self._send("POST", "/v1/admin/join-tokens", {"name": "fuzz"}, required=False)
        if token is None:
            return None
        host = self._send(
            "POST",
            "/v1/agent/register",
            {"token": token["token"], "name": "fuzz", "facts": HOST_FACTS},
            key=None,
            required=False,
        )
        if host is None:
            return None
        credential: str = host["credential"]
        beat = {"facts": HOST_FACTS}
        self._send("POST", "/v1/agent/heartbeat", beat, credential, False, "/v1/agent/heartbeat")
        return credential

    def _seed_tenant(self, tenant: Caller) -> None:
        """Best effort: what the customer's routes act on. A route that changed shape only costs
        depth here; the fuzzing itself still covers it."""
        org, at = f"/v1/orgs/{tenant.org_id}", "/v1/orgs/{org_id}"
        key = {"public_key": new_ssh_key()}
        self._send("POST", f"{org}/ssh-keys", key, tenant.key, False, f"{at}/ssh-keys")
        offers = self._send("GET", f"{org}/offers", None, tenant.key, False)
        if offers and offers.get("data"):
            vm = {"offer_id": offers["data"][0]["id"], "image": "busybox"}
            self._send("POST", f"{org}/vms", vm, tenant.key, False, f"{at}/vms")
        cluster = {"name": f"c-{os.urandom(4).hex()}", "gpu_type": "rtx-4090", "container": "x"}
        self._send("POST", f"{org}/clusters", cluster, tenant.key, False, f"{at}/clusters")

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        key: str | None = None,
        required: bool = True,
        example_of: str | None = None,
    ) -> Any:
        """A setup request, as the operator unless ``key`` is given; its JSON, or None when it
        failed and is not ``required``. When it succeeds, it is the accepted request of
        ``example_of`` for the mutation pass, if fuzzing finds none of its own."""
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        r = self.client.request(method, path, json=body, headers=headers)
        if not 200 <= r.status_code < 300:
            assert not required, f"{method} {path}: {r.status_code} {r.text}"
            return None
        self.harvest(r.status_code, r.content)
        if example_of is not None:
            url = f"{self.base_url}{path}"
            request = {"method": method, "url": url, "headers": headers, "json": body}
            self.examples[(method, example_of)] = request
        return r.json()

    def harvest(self, status: int, content: bytes) -> None:
        if not 200 <= status < 300:
            return
        try:
            body = json.loads(content)
        except ValueError:
            return
        for value in _ids_in(body):
            pool = self.numbers if isinstance(value, int) else self.ids
            pool.pop(str(value), None)
            pool[str(value)] = None

    def id_choices(self, template: str, name: str, caller: Caller, integer: bool) -> list[str]:
        """Candidates for a path id, newest first: those whose prefix fits the parameter
        (``vm_…`` for ``/vms/{vm_id}``), then any."""
        if name == "org_id":
            return [caller.org_id, caller.org_id, caller.other_org_id, MISSING_ORG]
        newest = list(reversed(self.numbers if integer else {**self.numbers, **self.ids}))
        hints = _id_hints(template, name)
        fitting = [i for i in newest if any(h.startswith(i.split("_")[0]) for h in hints)]
        return list(dict.fromkeys(fitting[:20] + newest[:20])) or ["1" if integer else "x"]

    def path_ids(
        self, template: str, caller: Caller, integers: Iterable[str] = ()
    ) -> st.SearchStrategy[dict[str, str]]:
        ints = set(integers)
        names = re.findall(r"\{(\w+)\}", template)
        return st.fixed_dictionaries(
            {n: st.sampled_from(self.id_choices(template, n, caller, n in ints)) for n in names}
        )

    def attempt(self, label: str, run: Callable[[], None]) -> None:
        try:
            run()
        except Unsatisfiable:
            pass  # nothing invalid to generate for this operation (only free-form string params)
        except Exception as exc:  # gathered and reported together at the end
            notes = "\n".join(getattr(exc, "__notes__", []))
            self.failures.append(f"{label}: {type(exc).__name__}: {exc}\n{notes}")

    def observe(self, method: str, url: str, r: httpx.Response | Any, detail: str = "") -> None:
        """Check one response and learn from it."""
        self.cases += 1
        headers = {k.lower(): (v[0] if isinstance(v, list) else v) for k, v in r.headers.items()}
        check_response(method, url, r.status_code, headers, r.content, detail)
        self.harvest(r.status_code, r.content)

    def report(self) -> str:
        return f"{len(self.failures)} operation(s) failed:\n\n" + "\n\n".join(self.failures)


HOST_FACTS = {
    "gpus": [
        {"index": i, "uuid": f"GPU-fuzz-{i}", "name": "RTX 4090", "vram_mb": 24564}
        for i in range(64)
    ],
    "driver_version": "550.54",
    "cuda_version": "12.4",
    "cpu_cores": 64,
    "ram_mb": 262144,
    "disk_free_mb": 2_000_000,
    "disk_total_mb": 4_000_000,
    "hostname": "fuzz",
    "address": "127.0.0.1",
    "port_range": {"start": 40000, "end": 40999},
    "os": "linux",
    "isolation": {"isolates": True, "runtime": "process"},
}


def _id_hints(template: str, name: str) -> set[str]:
    """Words an id prefix may abbreviate: the parameter's and the collection's (``ssh-keys``)."""
    segments = template.split("/")
    at = segments.index("{" + name + "}") if "{" + name + "}" in segments else 0
    collection = segments[at - 1].split("-")[0].removesuffix("s") if at > 0 else ""
    return {w for w in (name.removesuffix("_id"), collection) if w}


def new_ssh_key() -> str:
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + os.urandom(32)
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} fuzz"


def _ids_in(value: Any) -> Iterator[str | int]:
    """Ids in a response: ``id``/``*_id`` strings like ``vm_…``, and integer ids (the Vast
    dialect's, and instance numbers)."""
    if isinstance(value, dict):
        for key, item in value.items():
            named = key in ("id", "number") or key.endswith("_id")
            is_int = isinstance(item, int) and not isinstance(item, bool)
            if named and (is_int or (isinstance(item, str) and ID_RE.match(item))):
                yield item
            else:
                yield from _ids_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _ids_in(item)


def check_response(
    method: str, url: str, status: int, headers: dict[str, str], content: bytes, detail: str = ""
) -> None:
    """The contract every response keeps, whatever it was sent."""
    shown = url if len(url) <= 300 else f"{url[:300]}... ({len(url)} characters)"
    where = f"{method} {shown} {detail}-> {status}: {content[:300]!r}"
    assert status < 500, where
    if status == 400 and content == UVICORN_REFUSAL and "x-request-id" not in headers:
        # The HTTP server refused bytes it cannot parse (a request line over ~64 KiB; twice, in
        # CI, a short generated request whose bytes were not kept): the app never saw it, so its
        # contract does not apply; it answered 400, not 5xx.
        return
    assert headers.get("x-request-id"), f"no X-Request-Id on {where}"
    if status < 400:
        return
    try:
        body = json.loads(content)
    except ValueError:
        raise AssertionError(f"error body is not JSON on {where}") from None
    path = unquote(urlsplit(url).path)
    expected = json.loads(error_body(path, status, code="c", message="m", request_id="r"))
    assert isinstance(body, dict), where
    missing = {k for k in expected if k != "param"} - set(body)
    assert not missing, f"error envelope lacks {sorted(missing)} on {where}"
    for key, sample in expected.items():
        if isinstance(sample, dict):
            assert isinstance(body[key], dict), where
            assert set(sample) <= set(body[key]), where
    if "code" in expected:  # the native envelope
        assert isinstance(body["error"], str) and body["error"], where
        assert isinstance(body["code"], str) and body["code"], where
    if "request_id" in body:
        assert body["request_id"] == headers["x-request-id"], where


# --- schemathesis pass --------------------------------------------------------------------------


def _can_be_invalid(operation: Any) -> bool:
    """Whether negative generation has anything to work on (a free string path param has not)."""
    if len(operation.body) > 0:
        return True
    for parameter in operation.iter_parameters():
        if parameter.location != "path":
            return True
        if parameter.definition.get("schema", {}).get("type") != "string":
            return True
    return False


def case_strategy(operation: Any, caller: Caller, fuzzer: Fuzzer) -> st.SearchStrategy[Any]:
    """Generated cases, valid and (where possible) invalid; half of them aimed at real ids."""
    modes = [GenerationMode.POSITIVE]
    if _can_be_invalid(operation):
        modes.append(GenerationMode.NEGATIVE)
    generated = [operation.as_strategy(generation_mode=mode) for mode in modes]
    params = [p for p in operation.iter_parameters() if p.location == "path"]
    if not params:
        return st.one_of(generated)
    integers = [p.name for p in params if p.definition.get("schema", {}).get("type") == "integer"]

    def aim(pair: tuple[Any, dict[str, str]]) -> Any:
        case, chosen = pair
        case.path_parameters = {**case.path_parameters, **chosen}
        return case

    ids = fuzzer.path_ids(operation.path, caller, integers)
    return st.one_of(*generated, *(st.tuples(s, ids).map(aim) for s in generated))


# Values that a schema lets through and a database or a parser may choke on: NUL (Postgres text
# cannot hold it), lone surrogates, strings longer than a column, integers beyond 64 bits, JSON
# nested deeper than Python's parser recurses or of the wrong shape (for parameters holding JSON).
NASTY_STRINGS = [
    "\x00",
    "a\x00b",
    "\ud800",
    "x" * 5000,
    "\U0001f4a5" * 300,
    "' OR '1'='1",
    "%_\\",
    "",
    " \r\n\u2028",
    "9" * 40,
    "[" * 1500,
    "true",
]
NASTY_NUMBERS = [2**31, 2**63, -(2**63) - 1, 10**40, -1, 1e308]
WRONG_TYPES: list[Any] = [None, {"x": 1}]


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path, value


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


def _nasty_for(leaf: Any) -> list[Any]:
    if isinstance(leaf, bool):
        return WRONG_TYPES
    if isinstance(leaf, int | float):
        return NASTY_NUMBERS + WRONG_TYPES
    if isinstance(leaf, str):
        return NASTY_STRINGS + WRONG_TYPES
    return []


def mutations(request: dict[str, Any], template: str) -> Iterator[dict[str, Any]]:
    """An accepted request with one path parameter, body field or query value at a time set to
    a nasty value."""
    url = urlsplit(request["url"])
    segments, names = url.path.split("/"), template.split("/")
    if len(segments) == len(names):
        for index, name in enumerate(names):
            if not name.startswith("{"):
                continue
            for nasty in NASTY_STRINGS:
                if _fits_a_url(nasty):
                    path = "/".join(
                        [*segments[:index], quote(nasty, safe=""), *segments[index + 1 :]]
                    )
                    yield {**request, "url": url._replace(path=path).geturl()}
    for part in ("json", "params"):
        if part not in request:
            continue
        shapes: set[tuple[Any, ...]] = set()
        for path, leaf in list(_leaves(request[part])):
            shape = tuple("*" if isinstance(p, int) else p for p in path)
            if (not path and part == "params") or shape in shapes:
                continue  # one item of a list stands for all of them
            shapes.add(shape)
            for nasty in _nasty_for(leaf):
                if part == "params" and not _fits_a_url(nasty):
                    continue
                yield {**request, part: _replaced(request[part], path, nasty)}


def _fits_a_url(value: Any) -> bool:
    """A value that an HTTP client can put in a URL at all (a lone surrogate has no UTF-8)."""
    try:
        str(value).encode()
    except UnicodeEncodeError:
        return False
    return True


def fuzz_operation(
    operation: Any, caller: Caller, fuzzer: Fuzzer, session: requests.Session
) -> None:
    accepted: list[dict[str, Any]] = []
    method = operation.method.upper()

    @FUZZ
    @given(case=case_strategy(operation, caller, fuzzer))
    def run(case: Any) -> None:
        response = case.call(
            base_url=fuzzer.base_url, session=session, headers=caller.auth, timeout=30
        )
        sent = response.request.body
        detail = f"with body {sent[:300]!r} " if sent else ""
        fuzzer.observe(case.method.upper(), response.request.url or "", response, detail)
        if 200 <= response.status_code < 300 and not accepted:
            accepted.append(case.as_transport_kwargs(fuzzer.base_url, caller.auth))

    def mutate() -> None:
        example = accepted[0] if accepted else fuzzer.examples.get((method, operation.path))
        for request in mutations(example, operation.full_path) if example else ():
            r = session.request(**request, allow_redirects=False, timeout=30)
            sent = {k: request.get(k) for k in ("json", "params")}
            fuzzer.observe(request["method"], request["url"], r, f"with {sent!r:.300} ")

    fuzzer.attempt(f"{operation.label} as {caller.name}", run)
    fuzzer.attempt(f"{operation.label} as {caller.name}, accepted request mutated", mutate)


def fuzz_schema(fuzzer: Fuzzer, api_doc: dict[str, Any], shard: int = 0, shards: int = 1) -> int:
    """Fuzz every ``shards``-th operation from ``shard`` on (the test's shards run apart, so
    that test workers share the longest test of the suite)."""
    # A NUL is refused at the edge (400) before anything else looks at the request; the mutation
    # pass sends NULs on purpose, so generation leaves them out to reach further.
    config = schemathesis.Config.from_dict({"generation": {"allow-x00": False}})
    schema = schemathesis.openapi.from_dict(api_doc, config=config)
    operations = [result.ok() for result in schema.get_all_operations()][shard::shards]
    with requests.Session() as session:
        for operation in operations:
            for caller in fuzzer.callers_for(operation.path):
                fuzz_operation(operation, caller, fuzzer, session)
    return len(operations)


# --- raw bytes pass -----------------------------------------------------------------------------

_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

RAW_BODIES = st.one_of(
    st.binary(max_size=512),
    st.binary(min_size=1, max_size=64).map(lambda b: b"\xff\xfe\x80" + b),  # never UTF-8
    st.text(max_size=64).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.tuples(_JSON_VALUES, st.integers(min_value=0, max_value=80)).map(  # truncated JSON
        lambda pair: json.dumps(pair[0]).encode()[: pair[1]]
    ),
    _JSON_VALUES.map(lambda v: json.dumps(v).encode()),  # valid JSON of the wrong shape
    st.sampled_from(
        [
            b"",
            b"{",
            b"}",
            b"[",
            b"null",
            b"{}",
            b"[]",
            b'"x"',
            b"1e999999",
            b"NaN",
            b'{"name": NaN}',
            b"\xef\xbb\xbf{}",
            b"\x00\x00\x00{",
            b'{"name": "\\ud800"}',
            b'{"name": "a\\u0000b"}',
            b'{"name": "x", "name": 1}',
            b"[" * 50_000,
            b'{"a":' * 20_000,
            '{"name": "\u00e9"}'.encode("latin-1"),
            '{"name": "ok"}'.encode("utf-16"),
        ]
    ),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        "application/merge-patch+json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "application/octet-stream",
        "",
        None,
    ]
)


def _fill_path(template: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], template)


def fuzz_route(
    method: str, template: str, caller: Caller, fuzzer: Fuzzer, client: httpx.Client
) -> None:
    ids = fuzzer.path_ids(template, caller)

    @settings(FUZZ, max_examples=BYTE_EXAMPLES_PER_OPERATION)
    @given(body=RAW_BODIES, content_type=CONTENT_TYPES, path_ids=ids)
    def run(body: bytes, content_type: str | None, path_ids: dict[str, str]) -> None:
        headers = dict(caller.auth)
        if content_type is not None:
            headers["Content-Type"] = content_type
        r = client.request(method, _fill_path(template, path_ids), content=body, headers=headers)
        fuzzer.observe(method, str(r.url), r, f"({content_type}) with body {body[:300]!r} ")

    fuzzer.attempt(f"raw bytes {method} {template} as {caller.name}", run)


def fuzz_raw_bodies(fuzzer: Fuzzer, api_doc: dict[str, Any]) -> int:
    routes = [
        (method.upper(), path)
        for path, item in api_doc["paths"].items()
        for method in item
        if method.upper() in BODY_METHODS
    ]
    with httpx.Client(base_url=fuzzer.base_url, timeout=30) as client:
        for method, template in routes:
            for caller in fuzzer.callers_for(template):
                fuzz_route(method, template, caller, fuzzer, client)
    return len(routes)


# --- the tests ----------------------------------------------------------------------------------


async def _mint_operator_key(api: Api) -> str:
    async with write_session(api.ctx.sessions) as session:
        new = await api_keys.create_key(
            session, clock=api.clock, org_id=api.operator_org, name="fuzz", scopes=[Scope.OPERATOR]
        )
    return new.secret


async def _fuzz(api: Api, passes: Callable[[Fuzzer, dict[str, Any]], int]) -> tuple[int, Fuzzer]:
    """Run ``passes`` in a worker thread while this loop serves the app (and mints keys)."""
    loop = asyncio.get_running_loop()

    def mint() -> str:
        return asyncio.run_coroutine_threadsafe(_mint_operator_key(api), loop).result(timeout=30)

    def run() -> tuple[int, Fuzzer]:
        fuzzer = Fuzzer(api.base_url, api.operator_org, mint)
        try:
            return passes(fuzzer, api.app.openapi()), fuzzer
        finally:
            fuzzer.close()

    return await asyncio.to_thread(run)


SCHEMA_SHARDS = 3


@pytest.mark.timeout(600)  # many operations, each fuzzed; a shared CI machine can be slow
@pytest.mark.parametrize("shard", range(SCHEMA_SHARDS))
async def test_no_operation_answers_5xx_to_generated_requests(api: Api, shard: int) -> None:
    operations, fuzzer = await _fuzz(
        api, functools.partial(fuzz_schema, shard=shard, shards=SCHEMA_SHARDS)
    )

    assert operations >= 10, "the OpenAPI document lists suspiciously few operations"
    assert fuzzer.cases >= operations * 2
    assert not fuzzer.failures, fuzzer.report()


async def test_no_body_route_answers_5xx_to_raw_bytes(api: Api) -> None:
    routes, fuzzer = await _fuzz(api, fuzz_raw_bodies)

    assert routes >= 3, "the OpenAPI document lists suspiciously few POST/PATCH/PUT routes"
    assert fuzzer.cases >= routes * 2 * BYTE_EXAMPLES_PER_OPERATION
    assert not fuzzer.failures, fuzzer.report()
