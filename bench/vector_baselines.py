"""What bench/vector_search.py measures gpuyard against, on the same vectors and queries:
numpy brute force (exact), ``hnswlib`` (when installed; same graph parameters as the store's
usearch index), and ``sqlite-vec`` (a ``vec0`` table, exact search, loaded into SQLite through
``apsw``: the standard library's ``sqlite3`` cannot load extensions here; ``pip install
'gpuyard[bench]'``). A library that is not installed gives a row that says so."""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from report import Latency

from gpuyard.vectorstore.ann import CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH

K = 10
NAN = math.nan


@dataclass
class Row:
    """One line of the results table."""

    path: str
    latency: Latency
    recall: float
    insert_per_s: float = NAN  # rows written per second (no embedding)
    build_s: float = NAN  # making the index once the rows are there
    memory_mb: float = NAN  # what it added to a process's RSS (or its file)
    note: str = ""


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    hits = sum(len(set(f) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (K * len(truth))


def timed(queries: np.ndarray, search: Callable[[np.ndarray], list[int]]) -> tuple[Latency, list]:
    times, found = [], []
    for q in queries:
        started = time.perf_counter()
        found.append(search(q))
        times.append((time.perf_counter() - started) * 1000)
    return Latency.of(times), found


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def numpy_brute(base: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> Row:
    latency, found = timed(queries, lambda q: np.argpartition(-(base @ q), K)[:K].tolist())
    return Row(
        "numpy brute force (exact)", latency, recall(found, truth), memory_mb=base.nbytes / 1e6
    )


def hnswlib_index(base: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> Row:
    if importlib.util.find_spec("hnswlib") is None:
        return Row("hnswlib", Latency.of([]), NAN, note="not installed")
    hnswlib: Any = importlib.import_module("hnswlib")
    before = rss()
    started = time.perf_counter()
    index = hnswlib.Index(space="cosine", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=CONNECTIVITY, ef_construction=EXPANSION_ADD)
    index.add_items(base, np.arange(len(base)))
    built = time.perf_counter() - started
    index.set_ef(EXPANSION_SEARCH)
    index.set_num_threads(1)
    latency, found = timed(queries, lambda q: index.knn_query(q, k=K)[0][0].tolist())
    return Row(
        "hnswlib (in memory)",
        latency,
        recall(found, truth),
        build_s=built,
        memory_mb=(rss() - before) / 1e6,
    )


def sqlite_vec(base: np.ndarray, queries: np.ndarray, truth: np.ndarray, scratch: Path) -> Row:
    if importlib.util.find_spec("apsw") is None or importlib.util.find_spec("sqlite_vec") is None:
        return Row("sqlite-vec", Latency.of([]), NAN, note="apsw or sqlite-vec not installed")
    apsw: Any = importlib.import_module("apsw")
    sqlite_vec_module: Any = importlib.import_module("sqlite_vec")
    path = scratch / "sqlite-vec.db"
    db = apsw.Connection(str(path))
    db.enable_load_extension(True)
    db.load_extension(sqlite_vec_module.loadable_path())
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"CREATE VIRTUAL TABLE items USING vec0(embedding float[{base.shape[1]}])")
    started = time.perf_counter()
    for start in range(0, len(base), 1_000):
        with db:
            db.executemany(
                "INSERT INTO items(rowid, embedding) VALUES (?, ?)",
                [(start + i, v.tobytes()) for i, v in enumerate(base[start : start + 1_000])],
            )
    inserted = time.perf_counter() - started

    def search(q: np.ndarray) -> list[int]:
        rows = db.execute(
            "SELECT rowid FROM items WHERE embedding MATCH ? ORDER BY distance LIMIT ?",
            (q.tobytes(), K),
        ).fetchall()
        return [int(r[0]) for r in rows]

    latency, found = timed(queries, search)
    db.close()
    return Row(
        "sqlite-vec vec0 (exact, apsw)",
        latency,
        recall(found, truth),
        insert_per_s=len(base) / inserted,
        memory_mb=path.stat().st_size / 1e6,
        note="file size",
    )
