"""The vector store's search at scale, through the service call (``VectorStore``: the rows in a
real migrated database, the collection's usearch index): insert rate without the embedding
model, index build from the rows, search p50/p99 and recall@10 against exact search, and the
process's memory; side by side with the raw usearch index and numpy brute force on the same
vectors.

Run: ``python bench/vector_search.py [--n 100000] [--dims 384] [--data clustered|uniform]
[--db sqlite|postgres] [--queries 300]``. The embedding model is left out (its time is the
model's, not the store's): items are written with their vectors through the rows port, and
searches go through ``VectorStore.nearest`` with the query's vector.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil
from bench.scratch_db import KINDS, admin_postgres_url, scratch_database

from gpuyard.core.clock import ManualClock
from gpuyard.core.principal import Principal, Scope
from gpuyard.server.db import create_engine, session_factory
from gpuyard.server.orm import Org
from gpuyard.server.vector_ports import DatabaseVectorRows
from gpuyard.vectorstore.ann import Indexes
from gpuyard.vectorstore.records import Embedded, NewItem
from gpuyard.vectorstore.service import VectorStore

K = 10
INSERT_BATCH = 1_000


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("<f4")


def vectors(kind: str, n: int, dims: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "uniform":
        return unit(rng.standard_normal((n, dims)))
    centres = unit(rng.standard_normal((max(n // 100, 1), dims)))
    pick = rng.integers(0, len(centres), n)
    return unit(centres[pick] + 0.35 * unit(rng.standard_normal((n, dims))))


class NoEmbedder:
    """The store never embeds here: items come with their vectors, searches with theirs."""

    async def embed(self, principal: Principal, model: str, texts: object) -> Embedded:
        raise AssertionError("not used")

    async def serves(self, principal: Principal, model: str) -> bool:
        return True


def quantiles(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), statistics.quantiles(times, n=100)[98]


async def run(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(11)
    data = vectors(args.data, args.n + args.queries, args.dims, rng)
    base, queries = data[: args.n], data[args.n :]
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :K]
    with tempfile.TemporaryDirectory() as scratch:
        await measure(args, base, queries, truth, Path(scratch))


async def measure(
    args: argparse.Namespace,
    base: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    scratch: Path,
) -> None:
    process = psutil.Process()
    async with scratch_database(
        args.db, directory=scratch, admin_url=admin_postgres_url(), migrated=True
    ) as url:
        engine = create_engine(url)
        sessions = session_factory(engine)
        clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
        async with sessions() as s, s.begin():
            s.add(
                Org(
                    id="org_bench",
                    name="bench",
                    slug="bench",
                    created_at=clock.now(),
                    updated_at=clock.now(),
                )
            )
        rows = DatabaseVectorRows(sessions, clock)
        with tempfile.TemporaryDirectory() as index_dir:
            indexes = Indexes(rows, Path(index_dir))
            store = VectorStore(
                rows=rows,
                embedder=NoEmbedder(),
                search=indexes,
                default_model="none",
            )
            who = Principal(
                key_id="key_bench",
                org_id="org_bench",
                scopes=frozenset({Scope.INFERENCE}),
                secret_hash="",
            )
            made = await store.create_collection(who, name="bench", model=None)
            started = time.perf_counter()
            labels: list[int] = []
            for start in range(0, args.n, INSERT_BATCH):
                batch = base[start : start + INSERT_BATCH]
                items = await rows.add_items(
                    org_id=who.org_id,
                    collection_id=made.id,
                    items=[
                        NewItem(f"item {start + i}", "", 1, v.tobytes())
                        for i, v in enumerate(batch)
                    ],
                    dimensions=args.dims,
                )
                labels += [item.label for item in items]
            inserted = time.perf_counter() - started
            rss_before = process.memory_info().rss
            collection = await store.collection(who, made.id)
            started = time.perf_counter()
            await indexes.open(made.id, args.dims)
            built = time.perf_counter() - started
            rss_after = process.memory_info().rss
            position = {label: i for i, label in enumerate(labels)}
            index = indexes.loaded(made.id)
            assert index is not None

            service_times, raw_times, brute_times, recalls = [], [], [], []
            for q, expected in zip(queries, truth, strict=True):
                t = time.perf_counter()
                hits = await store.nearest(who, collection, q, k=K)
                service_times.append((time.perf_counter() - t) * 1000)
                found = {position[h.item.label] for h in hits}
                recalls.append(len(found & set(expected.tolist())) / K)
                t = time.perf_counter()
                index.search(q, K)
                raw_times.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                np.argpartition(-(base @ q), K)[:K]
                brute_times.append((time.perf_counter() - t) * 1000)
        await engine.dispose()

    print(f"{args.n} x {args.dims} ({args.data}), {args.db}, {args.queries} queries, k={K}")
    print(f"insert: {args.n / inserted:,.0f} items/s (batches of {INSERT_BATCH}, no embedding)")
    print(f"index build from the rows: {built:.1f} s, +{(rss_after - rss_before) / 1e6:.0f} MB RSS")
    print("| path | p50 ms | p99 ms | recall@10 |")
    print("| --- | --- | --- | --- |")
    p50, p99 = quantiles(service_times)
    print(
        f"| VectorStore.nearest (index + rows) | {p50:.3f} | {p99:.3f} | {np.mean(recalls):.3f} |"
    )
    p50, p99 = quantiles(raw_times)
    print(f"| usearch index alone | {p50:.3f} | {p99:.3f} | (same graph) |")
    p50, p99 = quantiles(brute_times)
    print(f"| numpy brute force | {p50:.3f} | {p99:.3f} | 1.000 |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--data", choices=["clustered", "uniform"], default="clustered")
    parser.add_argument("--db", choices=KINDS, default="sqlite")
    parser.add_argument("--queries", type=int, default=300)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
