"""The in-process approximate index of each collection (``usearch`` HNSW graphs, cosine).

The vectors live in the database; an index is a cache of them, one file per collection in the
index directory (beside the SQLite database), saved atomically. ``open`` loads the file when
there is one and makes it agree with the database: labels it lacks are added, labels the
database no longer has are removed, and a missing or unreadable file is rebuilt from the
rows. Once open, an index follows this process's writes directly and catches up with other
processes' inserts before a search, at most every ``catch_up_every`` seconds (``catch_up``: a
query, so not before every search); an item another process deleted may still be found, and
the caller drops it when its row is not there (``VectorStore.nearest``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from usearch.index import Index

from gpuyard.vectorstore.ports import VectorRows

log = logging.getLogger(__name__)

CONNECTIVITY = 16  # M: graph edges per node
EXPANSION_ADD = 128  # ef_construction
EXPANSION_SEARCH = 96  # ef_search (bench/ann_choice.py: recall@10 >= 0.95 at 100k x 384)
BATCH = 5_000  # vectors read from the database at a time
CATCH_UP_EVERY_S = 0.5  # how stale another process's inserts may be to a search here


def as_matrix(blobs: Sequence[bytes], dims: int) -> np.ndarray:
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dims)


class CollectionIndex:
    def __init__(self, collection_id: str, dims: int, path: Path | None) -> None:
        self.collection_id = collection_id
        self.dims = dims
        self.path = path
        self.index = new_index(dims)
        self.top = 0  # the highest label added
        self.caught_up = 0.0  # when it last read the rows above ``top`` (monotonic)
        self.dirty = False  # changed since it was last saved

    def __len__(self) -> int:
        return len(self.index)

    def add(self, labels: Sequence[int], vectors: np.ndarray, *, threads: int = 1) -> None:
        """``threads`` 0: every core (a build, off the event loop); 1 on the request path."""
        fresh = [i for i, label in enumerate(labels) if not self.index.contains(label)]
        if not fresh:
            return
        keys = np.asarray([labels[i] for i in fresh], dtype=np.uint64)
        self.index.add(keys, vectors[fresh], threads=threads)
        self.top = max(self.top, int(keys.max()))
        self.dirty = True

    def remove(self, label: int) -> None:
        if self.index.contains(label):
            self.index.remove(label)
            self.dirty = True

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The ``k`` nearest labels with their cosine similarity, best first."""
        if len(self.index) == 0:
            return []
        found = self.index.search(vector, min(k, len(self.index)), threads=1)
        return [
            (int(key), 1.0 - float(distance))
            for key, distance in zip(found.keys, found.distances, strict=True)
        ]

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = self.path.with_suffix(f".{os.getpid()}.part")
        self.index.save(str(partial))
        os.replace(partial, self.path)
        self.dirty = False


def labels_of(index: Index) -> list[int]:
    """Every label in ``index``, read as one array: iterating ``index.keys`` item by item reads
    them over again for each item (seconds at 10,000, minutes at 100,000)."""
    found: list[int] = np.asarray(index.keys, dtype=np.uint64).tolist()
    return found


def new_index(dims: int) -> Index:
    return Index(
        ndim=dims,
        metric="cos",
        dtype="f32",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
    )


class Indexes:
    """Every open collection index of this process; ``directory`` None keeps them in memory."""

    def __init__(
        self,
        rows: VectorRows,
        directory: Path | None,
        *,
        catch_up_every: float = CATCH_UP_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rows = rows
        self.directory = directory
        self.catch_up_every = catch_up_every
        self._monotonic = monotonic
        self._open: dict[str, CollectionIndex] = {}
        self._opening: dict[str, asyncio.Lock] = {}

    kind = "usearch"

    def loaded(self, collection_id: str) -> CollectionIndex | None:
        return self._open.get(collection_id)

    async def nearest(
        self, *, collection_id: str, dims: int, vector: np.ndarray, k: int
    ) -> list[tuple[int, float]]:
        index = await self.open(collection_id, dims)
        return index.search(vector, k)

    def added(self, collection_id: str, labels: Sequence[int], vectors: np.ndarray) -> None:
        index = self._open.get(collection_id)
        if index is not None and index.dims == vectors.shape[1]:
            index.add(labels, vectors)

    def removed(self, collection_id: str, labels: Sequence[int]) -> None:
        index = self._open.get(collection_id)
        if index is not None:
            for label in labels:
                index.remove(label)

    async def dropped(self, collection_id: str) -> None:
        self.drop(collection_id)

    async def open(self, collection_id: str, dims: int) -> CollectionIndex:
        """The collection's index, caught up with the database."""
        index = self._open.get(collection_id)
        if index is None or index.dims != dims:
            lock = self._opening.setdefault(collection_id, asyncio.Lock())
            async with lock:
                index = self._open.get(collection_id)
                if index is None or index.dims != dims:
                    index = await self._load(collection_id, dims)
                    self._open[collection_id] = index
        if self._monotonic() - index.caught_up >= self.catch_up_every:
            await self.catch_up(index)
        return index

    async def catch_up(self, index: CollectionIndex) -> None:
        """Add what other processes inserted since this index last looked."""
        index.caught_up = self._monotonic()
        while True:
            rows = await self.rows.vectors(collection_id=index.collection_id, after=index.top)
            if not rows:
                return
            index.add([label for label, _ in rows], as_matrix([v for _, v in rows], index.dims))
            if len(rows) < BATCH:
                return

    async def _load(self, collection_id: str, dims: int) -> CollectionIndex:
        path = self.directory / f"{collection_id}.usearch" if self.directory else None
        index = CollectionIndex(collection_id, dims, path)
        if path is not None and path.exists():
            try:
                await asyncio.to_thread(index.index.load, str(path))
            except Exception as exc:  # a torn or foreign file: rebuilt from the rows
                log.warning("rebuilding the index of %s: %s", collection_id, exc)
                index.index = new_index(dims)
            if index.index.ndim != dims:
                index.index = new_index(dims)
        wanted = set(await self.rows.labels(collection_id=collection_id))
        have = set(labels_of(index.index))
        for label in have - wanted:
            index.index.remove(label)
        missing = sorted(wanted - have)
        for start in range(0, len(missing), BATCH):
            rows = await self.rows.vectors(
                collection_id=collection_id, labels=missing[start : start + BATCH]
            )
            vectors = as_matrix([v for _, v in rows], dims)
            await asyncio.to_thread(index.add, [label for label, _ in rows], vectors, threads=0)
        index.top = max(wanted) if wanted else 0
        index.dirty = bool(missing) or bool(have - wanted) or index.dirty
        if index.dirty:
            await asyncio.to_thread(self._save, index)
        return index

    def _save(self, index: CollectionIndex) -> None:
        """Save, or say why not: the file is a cache, a search goes on without it."""
        try:
            index.save()
        except (OSError, RuntimeError) as exc:
            log.warning("could not save the index of %s: %s", index.collection_id, exc)

    def drop(self, collection_id: str) -> None:
        self._open.pop(collection_id, None)
        self._opening.pop(collection_id, None)
        if self.directory is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{collection_id}.usearch").unlink()

    def save_all(self) -> None:
        for index in self._open.values():
            self._save(index)
