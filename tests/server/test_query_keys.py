"""A key sent in a URL (``?api_key=``) is redacted in the access log's lines and never passed on:
a cluster's replica gets the query without it, and the request log does not hold it."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

import pytest

from gpuyard.server.query_keys import REDACTED, RedactKeys, install, redact, without_keys
from tests.gateway.kit import deploy, request_logs, serve
from tests.gateway.upstream import fake_model_server
from tests.harness import Api

KEY = "vl_LI0iA8N3TDcyFCbYwAM-yKt9CWFfm220zExJ5mI2DVQ"  # fixed: the same test ids in each process


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"/api/v0/instances/?api_key={KEY}", f"/api/v0/instances/?api_key={REDACTED}"),
        (f"/x?owner=me&api_key={KEY}&y=2", f"/x?owner=me&api_key={REDACTED}&y=2"),
        (f"/x?api_key={KEY}&api_key={KEY}", f"/x?api_key={REDACTED}&api_key={REDACTED}"),
        (f"/x?API%5Fkey={KEY}", f"/x?API%5Fkey={REDACTED}"),  # the name percent-encoded
        (f"/x?api+key={KEY}", f"/x?api+key={KEY}"),  # another name: "api key"
        (f"GET /x?api_key={KEY} HTTP/1.1", f"GET /x?api_key={REDACTED} HTTP/1.1"),
        ("/x?api_key=", f"/x?api_key={REDACTED}"),
        ("/x?api_key", "/x?api_key"),
        ("/x?my_api_key=1", "/x?my_api_key=1"),
        ("/plain", "/plain"),
    ],
)
def test_keys_in_urls_are_redacted(url: str, expected: str) -> None:
    assert redact(url) == expected


def test_keys_are_dropped_from_a_query_and_the_rest_kept_in_order() -> None:
    assert without_keys(f"x=1&api_key={KEY}&y=2&Api_Key=3") == "x=1&y=2"
    assert without_keys(f"api_key={KEY}") == ""
    assert without_keys("") == ""


def test_the_access_log_filter_redacts_uvicorns_arguments(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.access")
    install(logger.name)
    install(logger.name)  # once only
    assert sum(isinstance(f, RedactKeys) for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger=logger.name):
        # uvicorn's call: client address, method, path with query, HTTP version, status
        logger.info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/a?api_key={KEY}&b=1", "1.1", 200
        )
    assert KEY not in caplog.text
    assert f'"GET /a?api_key={REDACTED}&b=1 HTTP/1.1" 200' in caplog.text


async def test_a_key_in_the_query_reaches_neither_the_replica_nor_the_request_log(
    api: Api,
) -> None:
    async with AsyncExitStack() as stack:
        d = await deploy(api, stack, [await serve(stack, fake_model_server())])
        cluster = (await d.tenant.client.get(f"/v1/clusters/{d.cluster_id}")).json()
        slug = cluster["endpoint"].rsplit("/", 1)[1]
        anonymous = api.client_for(None)  # the key only in the query, as the Vast dialect sends

        r = await anonymous.get(f"/endpoints/{slug}/echo/x?x=1&api_key={d.tenant.key}&y=2")

        assert r.status_code == 200, r.text
        echo = r.json()
        assert echo["query"] == "x=1&y=2"
        assert d.tenant.key not in str(echo)
        rows = await request_logs(api)
        assert [row.endpoint for row in rows] == ["/echo/x"]
        assert all(d.tenant.key not in str(value) for value in vars(rows[0]).values())
