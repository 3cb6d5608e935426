"""Which in-process ANN library backs the vector store: ``hnswlib`` or ``usearch``, measured on
the same vectors (N x 384, cosine), with the same graph parameters (M=16, ef_construction=128,
ef_search=64): build time, recall@10 against exact search (numpy), single-query p50/p99, and
the index's size on disk.

Run: ``python bench/ann_choice.py [--n 100000] [--queries 500] [--data clustered]
[--lib usearch]`` (one library and data set per run keeps each under three minutes on two
cores). Two data sets: uniform random unit vectors (the hardest case for a graph index) and
clustered ones (nearer to what sentence embeddings look like: many topics, each a tight
cloud).

``hnswlib`` is not a dependency of gpuyard (it builds from source, needing a C++ compiler):
``pip install hnswlib`` before measuring it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np

DIM = 384
M = 16
EF_CONSTRUCTION = 128
EF_SEARCH = 64
K = 10


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def datasets(
    n: int, queries: int, rng: np.random.Generator
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    uniform = unit(rng.standard_normal((n + queries, DIM)))
    centres = unit(rng.standard_normal((n // 100, DIM)))
    pick = rng.integers(0, len(centres), n + queries)
    clustered = unit(centres[pick] + 0.35 * unit(rng.standard_normal((n + queries, DIM))))
    return {
        "uniform": (uniform[:n], uniform[n:]),
        "clustered": (clustered[:n], clustered[n:]),
    }


def exact(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    scores = queries @ data.T
    return np.argsort(-scores, axis=1)[:, :K]


def timed_queries(
    search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray
) -> tuple[np.ndarray, list[float]]:
    found, times = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(search(q))
        times.append((time.perf_counter() - t) * 1000)
    return np.array(found), times


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def run_hnswlib(
    data: np.ndarray, queries: np.ndarray, path: str
) -> tuple[float, np.ndarray, list[float], int]:
    import hnswlib

    t = time.perf_counter()
    index = hnswlib.Index(space="cosine", dim=DIM)
    index.init_index(max_elements=len(data), M=M, ef_construction=EF_CONSTRUCTION)
    index.add_items(data, np.arange(len(data)), num_threads=2)
    build = time.perf_counter() - t
    index.set_ef(EF_SEARCH)
    index.set_num_threads(1)
    found, times = timed_queries(lambda q: index.knn_query(q, k=K)[0][0], queries)
    index.save_index(path)
    return build, found, times, os.path.getsize(path)


def run_usearch(
    data: np.ndarray, queries: np.ndarray, path: str
) -> tuple[float, np.ndarray, list[float], int]:
    from usearch.index import Index

    t = time.perf_counter()
    index = Index(
        ndim=DIM,
        metric="cos",
        dtype="f32",
        connectivity=M,
        expansion_add=EF_CONSTRUCTION,
        expansion_search=EF_SEARCH,
    )
    index.add(np.arange(len(data)), data, threads=2)
    build = time.perf_counter() - t
    found, times = timed_queries(lambda q: index.search(q, K, threads=1).keys, queries)
    index.save(path)
    return build, found, times, os.path.getsize(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--data", choices=["uniform", "clustered"], action="append")
    parser.add_argument("--lib", choices=["hnswlib", "usearch"], action="append")
    args = parser.parse_args()
    wanted_data = set(args.data or ["uniform", "clustered"])
    wanted_libs = set(args.lib or ["hnswlib", "usearch"])
    rng = np.random.default_rng(7)
    print(
        f"{args.n} x {DIM}, cosine, M={M} ef_construction={EF_CONSTRUCTION} ef_search={EF_SEARCH}"
    )
    print("| data | library | build s | recall@10 | p50 ms | p99 ms | file MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (data, queries) in datasets(args.n, args.queries, rng).items():
            if name not in wanted_data:
                continue
            truth = exact(data, queries)
            for lib, run in (("hnswlib", run_hnswlib), ("usearch", run_usearch)):
                if lib not in wanted_libs:
                    continue
                build, found, times, size = run(data, queries, os.path.join(tmp, lib))
                q = statistics.quantiles(times, n=100)
                print(
                    f"| {name} | {lib} | {build:.1f} | {recall(found, truth):.3f} | "
                    f"{statistics.median(times):.3f} | {q[98]:.3f} | {size / 1e6:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
