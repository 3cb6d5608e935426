"""bench/vector_search.py's legs through gpuyard, on one database: a real ``gpuyard server``
process (gateway_cluster.py) routing the bench model server (vector_upstream.py) for an org, a
collection created over HTTP, its items written through the store's rows port (no embedding
model: the vectors are given), and then the same queries

- through the service call, ``VectorStore.nearest`` in this process (the store's database
  search: the in-process usearch index, or pgvector where the server enabled it; then the found
  rows' read), and the usearch graph alone;
- through HTTP, ``POST /v1/vector_store/{id}/search`` on the server (which embeds ``query N``
  through the gateway, searches, and answers), beside ``POST /v1/embeddings`` alone;
- RAG: ``POST /v1/chat/completions/RAG`` beside a plain chat completion and the embedding: what
  RAG adds apart from the embedding is RAG - chat - embedding (p50s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from gateway_cluster import gpuyard_serving
from heartbeat_fleet import ok
from report import Latency
from vector_baselines import K, Row, recall, rss
from vector_upstream import CHAT_MODEL, EMBED_MODEL

from gpuyard.core.clock import ManualClock
from gpuyard.core.principal import Principal, Scope
from gpuyard.server.db import create_engine, session_factory
from gpuyard.server.vector_ports import DatabaseSearch, DatabaseVectorRows
from gpuyard.vectorstore.ann import Indexes
from gpuyard.vectorstore.records import Embedded, NewItem
from gpuyard.vectorstore.service import VectorStore

INSERT_BATCH = 1_000
WARM_UP = 20


class NoEmbedder:
    """The service call is given vectors: the model is never asked."""

    async def embed(self, principal: Principal, model: str, texts: object) -> Embedded:
        raise AssertionError("not used")

    async def serves(self, principal: Principal, model: str) -> bool:
        return True


@dataclass
class Leg:
    rows: list[Row]
    rag_added_ms: float


async def timed_async(queries: np.ndarray, search: Any) -> tuple[Latency, list[list[int]]]:
    for q in queries[:WARM_UP]:
        await search(0, q)
    times, found = [], []
    for i, q in enumerate(queries):
        started = time.perf_counter()
        found.append(await search(i, q))
        times.append((time.perf_counter() - started) * 1000)
    return Latency.of(times), found


async def leg(
    label: str,
    db: str,
    *,
    admin_url: str,
    base: np.ndarray,
    texts: list[str],
    queries: np.ndarray,
    truth: np.ndarray,
    workdir: Path,
    upstream_port: int,
) -> Leg:
    async with gpuyard_serving(
        upstream_port, EMBED_MODEL, db=db, workdir=workdir, admin_url=admin_url
    ) as served:
        engine = create_engine(served.database_url)
        sessions = session_factory(engine)
        clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
        rows = DatabaseVectorRows(engine, sessions, clock)
        indexes = Indexes(rows, workdir / "gpuyard" / "vector-index")
        search = DatabaseSearch(engine, sessions, rows, indexes)
        await search.prepare()
        store = VectorStore(rows=rows, embedder=NoEmbedder(), search=search, default_model="-")
        who = Principal("key_bench", served.org_id, frozenset({Scope.INFERENCE}), "")
        headers = {"Authorization": f"Bearer {served.key}"}
        # Long: the server's first search opens the index (its file, then the rows' labels).
        async with httpx.AsyncClient(
            base_url=served.base_url, headers=headers, timeout=600
        ) as http:
            made = ok(
                await http.post(
                    "/v1/vector_store", json={"name": "bench", "embedding_model": EMBED_MODEL}
                ),
                201,
            )["collection"]
            position: dict[str, int] = {}
            labels: dict[int, int] = {}
            started = time.perf_counter()
            for start in range(0, len(base), INSERT_BATCH):
                batch = base[start : start + INSERT_BATCH]
                items = await rows.add_items(
                    org_id=who.org_id,
                    collection_id=made["id"],
                    items=[
                        NewItem(texts[start + i], texts[start + i][:100], 1, v.tobytes())
                        for i, v in enumerate(batch)
                    ],
                    dimensions=base.shape[1],
                )
                for i, item in enumerate(items):
                    position[item.id], labels[item.label] = start + i, start + i
            inserted = time.perf_counter() - started
            collection = await store.collection(who, made["id"])
            before = rss()
            started = time.perf_counter()
            await store.nearest(who, collection, queries[0], k=K)  # opens (builds) the index
            built = time.perf_counter() - started
            grown = (rss() - before) / 1e6
            kind = search.kind

            async def service(i: int, q: np.ndarray) -> list[int]:
                return [labels[h.item.label] for h in await store.nearest(who, collection, q, k=K)]

            latency, found = await timed_async(queries, service)
            in_process = kind == "usearch"
            out = [
                Row(
                    f"{label}: service call ({kind} + rows)",
                    latency,
                    recall(found, truth),
                    insert_per_s=len(base) / inserted,
                    build_s=built if in_process else float("nan"),
                    memory_mb=grown if in_process else float("nan"),
                    note="" if in_process else "HNSW kept by Postgres as items are inserted",
                )
            ]
            graph = indexes.loaded(made["id"])
            if kind == "usearch" and graph is not None:

                async def alone(i: int, q: np.ndarray) -> list[int]:
                    return [labels[label] for label, _ in graph.search(q, K)]

                latency, found = await timed_async(queries, alone)
                out.append(Row(f"{label}: usearch graph alone", latency, recall(found, truth)))

            async def over_http(i: int, q: np.ndarray) -> list[int]:
                answer = ok(
                    await http.post(
                        f"/v1/vector_store/{made['id']}/search", json={"input": f"query {i}"}
                    )
                )
                return [position[r["id"]] for r in answer["results"]]

            started = time.perf_counter()
            await over_http(0, queries[0])
            opened = time.perf_counter() - started
            latency, found = await timed_async(queries, over_http)
            server_rss = psutil.Process(served.pid).memory_info().rss / 1e6
            out.append(
                Row(
                    f"{label}: HTTP search (embedding hop included)",
                    latency,
                    recall(found, truth),
                    build_s=opened,
                    memory_mb=server_rss,
                    note="build: the server's first search (opens the saved index); server RSS",
                )
            )
            rag = await rag_rows(http, made["id"], label, len(queries))
            out += rag
        await engine.dispose()
    added = rag[2].latency.p50 - rag[1].latency.p50 - rag[0].latency.p50
    return Leg(out, added)


async def rag_rows(http: httpx.AsyncClient, collection_id: str, label: str, n: int) -> list[Row]:
    """The embedding alone, a plain chat completion, and RAG, over HTTP, interleaved."""
    calls = {
        "HTTP embeddings alone": (
            "/v1/embeddings",
            lambda i: {"model": EMBED_MODEL, "input": f"query {i}"},
        ),
        "HTTP chat completion alone": (
            "/v1/chat/completions",
            lambda i: {
                "model": CHAT_MODEL,
                "messages": [{"role": "user", "content": f"query {i}"}],
            },
        ),
        "HTTP chat completion with RAG": (
            "/v1/chat/completions/RAG",
            lambda i: {
                "model": CHAT_MODEL,
                "collection": collection_id,
                "messages": [{"role": "user", "content": f"query {i}"}],
            },
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(n + WARM_UP):
        for name, (path, body) in calls.items():
            started = time.perf_counter()
            ok(await http.post(path, json=body(i % n)))
            if i >= WARM_UP:
                times[name].append((time.perf_counter() - started) * 1000)
    return [Row(f"{label}: {name}", Latency.of(t), float("nan")) for name, t in times.items()]
