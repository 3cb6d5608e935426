"""The collections' approximate indexes: files beside the database, rebuilt from the rows when
missing or unreadable, brought back in line when stale, and caught up with other processes'
writes, on SQLite and Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from gpuyard.core.errors import Conflict
from gpuyard.core.principal import Principal
from gpuyard.server.vector_ports import DatabaseSearch, DatabaseVectorRows
from gpuyard.vectorstore.ann import Indexes
from gpuyard.vectorstore.records import NewItem
from gpuyard.vectorstore.service import VectorStore
from tests.server.vector_kit import ENGINES, FRUIT, Vectors, add, collection, started


@pytest.fixture
async def vectors(db_url: str, tmp_path: Path) -> AsyncIterator[Vectors]:
    async with started(db_url, tmp_path) as running:
        yield running


def another_process(v: Vectors, directory: Path) -> VectorStore:
    """A second server process over the same database and index directory."""
    ctx = v.api.ctx
    rows = DatabaseVectorRows(ctx.engine, ctx.sessions, ctx.clock)
    return VectorStore(
        rows=rows,
        embedder=ctx.vectors.embedder,
        search=Indexes(rows, directory),
        default_model=ctx.vectors.default_model,
    )


def indexes_of(store: VectorStore) -> Indexes:
    """The store's in-process indexes (these tests run where pgvector is not used)."""
    backend = store.search_backend
    found = backend.current if isinstance(backend, DatabaseSearch) else backend
    assert isinstance(found, Indexes)
    return found


async def principal(v: Vectors) -> Principal:
    return await v.api.ctx.gateway.auth.principal(v.tenant.key)


async def ranking(store: VectorStore, who: Principal, cid: str, query: str) -> list[str]:
    found = await store.search(who, cid, query=query)
    return [h.item.id for h in found.hits]


async def test_an_index_is_rebuilt_from_the_rows_when_missing_or_unreadable(
    vectors: Vectors,
) -> None:
    store = vectors.api.ctx.vectors
    directory = indexes_of(store).directory
    assert directory is not None
    cid = await collection(vectors.client)
    for text in FRUIT + ENGINES:
        await add(vectors.client, cid, text)
    who = await principal(vectors)
    expected = await ranking(store, who, cid, "engine oil")
    path = directory / f"{cid}.usearch"
    assert path.exists()  # saved when it was first built

    path.unlink()
    fresh = another_process(vectors, directory)
    assert await ranking(fresh, who, cid, "engine oil") == expected
    assert path.exists()

    path.write_bytes(b"not an index")
    torn = another_process(vectors, directory)
    assert await ranking(torn, who, cid, "engine oil") == expected
    index = indexes_of(torn).loaded(cid)
    assert index is not None and len(index) == len(FRUIT + ENGINES)


async def test_a_stale_index_file_is_brought_in_line_with_the_rows(vectors: Vectors) -> None:
    store = vectors.api.ctx.vectors
    directory = indexes_of(store).directory
    assert directory is not None
    cid = await collection(vectors.client)
    ids = {t: (await add(vectors.client, cid, t))["item"]["id"] for t in FRUIT}
    who = await principal(vectors)
    await ranking(store, who, cid, "apples")  # builds and saves the index of three items
    # Written by another process after the file was saved: two added, one deleted.
    later = another_process(vectors, directory)
    for text in ENGINES[:2]:
        await later.add_item(who, cid, content=text, description=None)
    await later.delete_item(who, cid, ids[FRUIT[0]])

    restarted = another_process(vectors, directory)
    found = await ranking(restarted, who, cid, "engine oil")
    assert len(found) == 4 and ids[FRUIT[0]] not in found
    index = indexes_of(restarted).loaded(cid)
    assert index is not None and len(index) == 4


async def test_an_open_index_catches_up_with_other_processes(vectors: Vectors) -> None:
    store = vectors.api.ctx.vectors
    now = [0.0]
    indexes_of(store)._monotonic = lambda: now[0]  # the catch-up's clock, moved by hand
    cid = await collection(vectors.client)
    await add(vectors.client, cid, FRUIT[0])
    who = await principal(vectors)
    assert len(await ranking(store, who, cid, "oil")) == 1
    other = another_process(vectors, indexes_of(store).directory or Path())
    added = await other.add_item(who, cid, content=ENGINES[0], description=None)
    first = await other.add_item(who, cid, content=FRUIT[1], description=None)
    await other.delete_item(who, cid, first.item.id)
    # Within the catch-up interval a search does not read the rows again: not found yet.
    now[0] += indexes_of(store).catch_up_every / 2
    assert added.item.id not in await ranking(store, who, cid, "diesel engine oil")
    now[0] += indexes_of(store).catch_up_every
    found = await ranking(store, who, cid, "diesel engine oil")
    assert found[0] == added.item.id and first.item.id not in found


async def test_search_is_exact_enough_past_the_first_batch(vectors: Vectors) -> None:
    """More items than one batch of vectors read from the database (5,000): the index built
    from the rows finds each item's own vector first."""
    store = vectors.api.ctx.vectors
    cid = await collection(vectors.client)
    who = await principal(vectors)
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((5_200, 64)).astype("<f4")
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    rows = store.rows
    await rows.add_items(
        org_id=who.org_id,
        collection_id=cid,
        items=[
            NewItem(content=f"v{i}", description=f"v{i}", tokens=1, vector=m.tobytes())
            for i, m in enumerate(matrix)
        ],
        dimensions=64,
    )
    collection_row = await store.collection(who, cid)
    hits = 0
    for i in range(0, 5_200, 260):
        found = await store.nearest(who, collection_row, matrix[i], k=1)
        hits += found[0].item.content == f"v{i}"
    assert hits == 20


async def test_first_items_of_two_dimensions_at_once_keep_one(vectors: Vectors) -> None:
    """Two first items with vectors of different dimensions, written at the same time (two
    embedding models racing after a model change): exactly one is kept, the other refused."""
    rows = vectors.api.ctx.vectors.rows
    who = await principal(vectors)
    for attempt in range(5):
        cid = await collection(vectors.client, f"race {attempt}")

        async def write(dims: int, cid: str = cid) -> object:
            item = NewItem("x", "x", 1, np.ones(dims, dtype="<f4").tobytes())
            try:
                return await rows.add_items(
                    org_id=who.org_id, collection_id=cid, items=[item], dimensions=dims
                )
            except Conflict as exc:
                return exc

        results = await asyncio.gather(write(64), write(32))
        conflicts = [r for r in results if isinstance(r, Conflict)]
        assert len(conflicts) == 1, results
        kept = (await vectors.client.get(f"/v1/vector_store/{cid}")).json()["collection"]
        items = (await vectors.client.get(f"/v1/vector_store/{cid}/items")).json()["items"]
        assert len(items) == 1 and kept["dimensions"] in (64, 32)
