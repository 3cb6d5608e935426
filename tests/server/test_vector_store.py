"""The vector store through plain HTTP: collections, items and search on a real embedding
deployment (tests/server/embedding_server.py) behind the gateway, on SQLite and Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.gateway.kit import deploy, openai_error, serve
from tests.server.embedding_server import embedding_server
from tests.server.vector_kit import (
    ENGINES,
    FRUIT,
    MODEL,
    Vectors,
    add,
    collection,
    publish,
    started,
)


@pytest.fixture
async def vectors(vector_db_url: str, tmp_path: Path) -> AsyncIterator[Vectors]:
    async with started(vector_db_url, tmp_path) as running:
        yield running


async def test_collections_create_list_get_rename_delete(vectors: Vectors) -> None:
    c = vectors.client
    r = await c.post("/v1/vector_store", json={"name": "docs"})
    assert r.status_code == 201, r.text
    made = r.json()["collection"]
    assert made["name"] == "docs" and made["embedding_model"] == MODEL
    assert made["dimensions"] is None
    other = await collection(c, "notes")
    listed = (await c.get("/v1/vector_store")).json()["collections"]
    assert [x["id"] for x in listed] == [made["id"], other]
    assert (await c.get(f"/v1/vector_store/{made['id']}")).json()["collection"] == made

    r = await c.put(f"/v1/vector_store/{made['id']}", json={"name": "manuals"})
    assert r.status_code == 200, r.text
    renamed = r.json()["collection"]
    assert renamed["id"] == made["id"] and renamed["name"] == "manuals"

    await add(c, made["id"], "some text")
    r = await c.delete(f"/v1/vector_store/{made['id']}")
    assert r.status_code == 204
    openai_error(await c.get(f"/v1/vector_store/{made['id']}"), 404, "collection_not_found")
    openai_error(await c.delete(f"/v1/vector_store/{made['id']}"), 404, "collection_not_found")
    assert [x["id"] for x in (await c.get("/v1/vector_store")).json()["collections"]] == [other]


async def test_items_add_list_get_describe_delete(vectors: Vectors) -> None:
    c = vectors.client
    cid = await collection(c)
    long = "word " * 60
    added = await add(c, cid, long)
    item = added["item"]
    assert item["content"] == long
    assert item["description"] == ("word " * 20).strip()[:99] + "…"
    assert added["usage"] == {"prompt_tokens": 60, "total_tokens": 60}
    described = await add(c, cid, "short text", description="mine")
    assert described["item"]["description"] == "mine"
    assert (await c.get(f"/v1/vector_store/{cid}")).json()["collection"]["dimensions"] == 64

    r = await c.put(f"/v1/vector_store/{cid}/items/{item['id']}", json={"description": "new"})
    assert r.status_code == 200, r.text
    assert r.json()["item"]["description"] == "new"
    got = (await c.get(f"/v1/vector_store/{cid}/items/{item['id']}")).json()["item"]
    assert got["description"] == "new" and got["content"] == long

    assert (await c.delete(f"/v1/vector_store/{cid}/items/{item['id']}")).status_code == 204
    openai_error(await c.get(f"/v1/vector_store/{cid}/items/{item['id']}"), 404, "item_not_found")
    listed = (await c.get(f"/v1/vector_store/{cid}/items")).json()
    assert [i["id"] for i in listed["items"]] == [described["item"]["id"]]
    assert listed["next_cursor"] is None


async def test_items_are_listed_page_by_page(vectors: Vectors) -> None:
    c = vectors.client
    cid = await collection(c)
    ids = [(await add(c, cid, f"item number {n}"))["item"]["id"] for n in range(23)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = (await c.get(f"/v1/vector_store/{cid}/items", params=params)).json()
        seen += [i["id"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids and pages == 3
    for bad in ["x", "\u00b2", "\u0663"]:  # a superscript two and an Arabic-Indic three are
        # digits to str.isdigit(), not to int() (the schema fuzz found the first as a 500)
        openai_error(
            await c.get(f"/v1/vector_store/{cid}/items", params={"cursor": bad}),
            400,
            "invalid_request",
        )


async def test_search_finds_the_closest_items_first(vectors: Vectors) -> None:
    c = vectors.client
    cid = await collection(c)
    empty = await c.post(f"/v1/vector_store/{cid}/search", json={"input": "oil"})
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"results": [], "usage": {"prompt_tokens": 0, "total_tokens": 0}}
    ids = {text: (await add(c, cid, text))["item"]["id"] for text in FRUIT + ENGINES}

    r = await c.post(f"/v1/vector_store/{cid}/search", json={"input": "engine oil"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    results = body["results"]
    assert len(results) == len(FRUIT + ENGINES)
    scores = [x["score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    score = {x["id"]: x["score"] for x in results}
    # Every engine item at least as close as every fruit item (the test model's hashed words
    # may tie), the one with both words first.
    assert min(score[ids[t]] for t in ENGINES) >= max(score[ids[t]] for t in FRUIT), results
    assert results[0]["content"] == "the diesel engine needs oil" and "description" in results[0]

    # A deleted item is never found again.
    gone = results[0]["id"]
    assert (await c.delete(f"/v1/vector_store/{cid}/items/{gone}")).status_code == 204
    again = (await c.post(f"/v1/vector_store/{cid}/search", json={"input": "engine oil"})).json()
    assert gone not in {x["id"] for x in again["results"]}
    assert len(again["results"]) == len(FRUIT + ENGINES) - 1


async def test_another_orgs_collections_and_items_are_not_found(vectors: Vectors) -> None:
    mine = vectors.client
    theirs = (await vectors.api.tenant("Other")).client
    cid = await collection(mine)
    item = (await add(mine, cid, "apples and pears"))["item"]["id"]
    their_cid = await collection(theirs)
    their_item = (await add(theirs, their_cid, "apples and pears too"))["item"]["id"]

    for method, path, body in [
        ("GET", f"/v1/vector_store/{cid}", None),
        ("PUT", f"/v1/vector_store/{cid}", {"name": "x"}),
        ("DELETE", f"/v1/vector_store/{cid}", None),
        ("GET", f"/v1/vector_store/{cid}/items", None),
        ("POST", f"/v1/vector_store/{cid}/items", {"content": "x"}),
        ("POST", f"/v1/vector_store/{cid}/search", {"input": "apples"}),
        ("GET", f"/v1/vector_store/{cid}/items/{item}", None),
        ("PUT", f"/v1/vector_store/{cid}/items/{item}", {"description": "x"}),
        ("DELETE", f"/v1/vector_store/{cid}/items/{item}", None),
        # their own collection, my item in it
        ("GET", f"/v1/vector_store/{their_cid}/items/{item}", None),
        ("DELETE", f"/v1/vector_store/{their_cid}/items/{item}", None),
    ]:
        r = await theirs.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
    # Mine are untouched, and each org's search finds only its own.
    assert (await mine.get(f"/v1/vector_store/{cid}/items/{item}")).status_code == 200
    found = await theirs.post(f"/v1/vector_store/{their_cid}/search", json={"input": "apples"})
    assert [x["id"] for x in found.json()["results"]] == [their_item]
    assert [x["id"] for x in (await mine.get("/v1/vector_store")).json()["collections"]] == [cid]


async def test_bad_input_is_refused_and_changes_nothing(vectors: Vectors) -> None:
    c = vectors.client
    cid = await collection(c)
    openai_error(await c.post("/v1/vector_store", json={"name": ""}), 400, "invalid_request")
    r = await c.post("/v1/vector_store", json={"name": 5})
    assert r.status_code in (400, 422) and "error" in r.json()
    r = await c.post(
        "/v1/vector_store", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code in (400, 422)
    openai_error(
        await c.post("/v1/vector_store", json={"name": "x", "embedding_model": "nope"}),
        400,
        "invalid_request",
    )
    openai_error(
        await c.post(f"/v1/vector_store/{cid}/items", json={"content": "  "}),
        400,
        "invalid_request",
    )
    openai_error(
        await c.post(f"/v1/vector_store/{cid}/items", json={"content": "x" * 16_001}),
        400,
        "invalid_request",
    )
    openai_error(
        await c.post(f"/v1/vector_store/{cid}/search", json={"input": ""}), 400, "invalid_request"
    )
    for bad in ("col_x", "nothing", "col_" + "0" * 20):
        openai_error(await c.get(f"/v1/vector_store/{bad}"), 404, "collection_not_found")
    openai_error(await c.get(f"/v1/vector_store/{cid}/items/itm_nope"), 404, "item_not_found")
    assert (await c.get(f"/v1/vector_store/{cid}/items")).json()["items"] == []

    # The embedding model of a collection with items cannot change; of an empty one it can.
    await add(c, cid, "apples")
    openai_error(
        await c.put(f"/v1/vector_store/{cid}", json={"embedding_model": MODEL + "2"}),
        400,
        "invalid_request",
    )
    vectors.model_server.state.down = True
    r = await c.post(f"/v1/vector_store/{cid}/items", json={"content": "pears"})
    openai_error(r, 503, "embedding_model_unavailable")
    assert r.headers["retry-after"]
    openai_error(
        await c.post(f"/v1/vector_store/{cid}/search", json={"input": "pears"}),
        503,
        "embedding_model_unavailable",
    )
    items = (await c.get(f"/v1/vector_store/{cid}/items")).json()["items"]
    assert [i["content"] for i in items] == ["apples"]


async def test_model_change_of_a_collection_with_items_is_a_conflict(vectors: Vectors) -> None:
    c = vectors.client
    cid = await collection(c)
    r = await c.put(f"/v1/vector_store/{cid}", json={"embedding_model": MODEL})
    assert r.status_code == 200, r.text
    await add(c, cid, "apples")
    r = await c.put(f"/v1/vector_store/{cid}", json={"name": "kept", "embedding_model": MODEL})
    assert r.status_code == 200 and r.json()["collection"]["name"] == "kept"
    # Another model this org can reach: a second deployment serving "words2".
    async with AsyncExitStack() as stack:
        port = await serve(stack, embedding_server(MODEL + "2"))
        other = await deploy(vectors.api, stack, [port], name="embedder-two")
        # Another org's deployment: this org cannot reach its model.
        openai_error(
            await c.put(f"/v1/vector_store/{cid}", json={"embedding_model": MODEL + "2"}),
            400,
            "invalid_request",
        )
        await publish(vectors.api, other.cluster_id)
        openai_error(
            await c.put(f"/v1/vector_store/{cid}", json={"embedding_model": MODEL + "2"}),
            409,
            "collection_not_empty",
        )
    assert (await c.get(f"/v1/vector_store/{cid}")).json()["collection"]["name"] == "kept"


async def test_search_runs_in_postgres_where_pgvector_is(
    vectors: Vectors, vector_db_kind: str
) -> None:
    """pgvector where ``CREATE EXTENSION vector`` succeeds, the in-process index elsewhere."""
    search = vectors.api.ctx.vector_search
    assert search.kind == ("pgvector" if vector_db_kind == "pgvector" else "usearch")
    if vector_db_kind == "postgres":
        assert search.why_not_pgvector  # this Postgres has no pgvector: why is said
    c = vectors.client
    cid = await collection(c)
    for content in FRUIT + ENGINES:
        await add(c, cid, content)
    found = await c.post(f"/v1/vector_store/{cid}/search", json={"input": "cherry orchard"})
    assert found.json()["results"][0]["content"] == "the orchard has cherry trees"
    if vector_db_kind == "pgvector":
        async with vectors.api.ctx.engine.connect() as conn:
            plan = "\n".join(
                row[0]
                for row in await conn.execute(
                    text(
                        "EXPLAIN SELECT item_pk FROM vector_embeddings "
                        f"WHERE collection_id = '{cid}' ORDER BY embedding::vector(64) "
                        "<=> CAST(:q AS vector(64)) LIMIT 10"
                    ),
                    {"q": "[" + ",".join(["0.125"] * 64) + "]"},
                )
            )
            count = await conn.scalar(text("SELECT count(*) FROM vector_embeddings"))
        assert count == len(FRUIT + ENGINES)
        assert f"vector_embeddings_hnsw_{cid}" in plan, plan


async def test_a_collection_whose_model_nobody_serves(vectors: Vectors) -> None:
    """As ``/v1/embeddings`` answers for a model with no ready replica: 404, nothing written."""
    ghost = await vectors.api.ctx.vectors.rows.create_collection(
        org_id=vectors.tenant.org_id, name="ghost", model="no-such-model"
    )
    c = vectors.client
    r = await c.post(f"/v1/vector_store/{ghost.id}/items", json={"content": "apples"})
    openai_error(r, 404, "embedding_model_not_found")
    assert (await c.get(f"/v1/vector_store/{ghost.id}/items")).json()["items"] == []
    empty = await c.post(f"/v1/vector_store/{ghost.id}/search", json={"input": "apples"})
    assert empty.status_code == 200 and empty.json()["results"] == []
