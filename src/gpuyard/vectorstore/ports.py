"""What the vector store needs from the rest of gpuyard, as three interfaces.

- ``VectorRows``: collections and items in the database, every read and write scoped to an
  org (another org's collection or item is as absent as one that never existed);
- ``Embedder``: text to vectors through an embedding model the caller may use (the gateway).

- ``NearestSearch``: the nearest labels of a collection to a vector: the in-process index
  (ann.py) or, on Postgres with pgvector, the database itself.

The composition root fills them in (server/vector_ports.py); a test may fill them in with its
own honest implementations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from gpuyard.core.principal import Principal
from gpuyard.vectorstore.records import Collection, Embedded, File, Item, NewFile, NewItem


class VectorRows(Protocol):
    async def create_collection(self, *, org_id: str, name: str, model: str) -> Collection: ...

    async def collections(self, *, org_id: str) -> list[Collection]: ...

    async def collection(self, *, org_id: str, collection_id: str) -> Collection | None: ...

    async def update_collection(
        self, *, org_id: str, collection_id: str, name: str | None, model: str | None
    ) -> Collection | None:
        """Rename, or bind to another model; raises ``Conflict`` for a model change of a
        collection that has items."""
        ...

    async def delete_collection(self, *, org_id: str, collection_id: str) -> bool: ...

    async def add_items(
        self, *, org_id: str, collection_id: str, items: Sequence[NewItem], dimensions: int
    ) -> list[Item]:
        """All or none; raises ``NotFound`` when the collection is gone and ``Conflict`` when
        its vectors have other dimensions."""
        ...

    async def items(
        self, *, org_id: str, collection_id: str, after: int, limit: int
    ) -> list[Item]: ...

    async def item(self, *, org_id: str, collection_id: str, item_id: str) -> Item | None: ...

    async def describe_item(
        self, *, org_id: str, collection_id: str, item_id: str, description: str
    ) -> Item | None: ...

    async def delete_item(self, *, org_id: str, collection_id: str, item_id: str) -> int | None:
        """The deleted item's label, None when there was no such item."""
        ...

    async def items_by_label(
        self, *, org_id: str, collection_id: str, labels: Sequence[int]
    ) -> list[Item]: ...

    async def labels(self, *, collection_id: str) -> list[int]:
        """Every item's label in the collection."""
        ...

    async def vectors(
        self, *, collection_id: str, labels: Sequence[int] | None = None, after: int = 0
    ) -> list[tuple[int, bytes]]:
        """``(label, vector)`` of the given labels, or of every label above ``after``."""
        ...

    async def add_file(
        self, *, org_id: str, key_id: str, collection_id: str, file: NewFile
    ) -> File | None:
        """The file, enqueued for its controller (woken); None when the collection is gone."""
        ...

    async def files(self, *, org_id: str, collection_id: str) -> list[File]: ...

    async def file(self, *, org_id: str, collection_id: str, file_id: str) -> File | None: ...

    async def delete_file(
        self, *, org_id: str, collection_id: str, file_id: str
    ) -> list[int] | None:
        """Delete the file and its items: their labels; None when there was no such file."""
        ...


class Embedder(Protocol):
    async def embed(self, principal: Principal, model: str, texts: Sequence[str]) -> Embedded:
        """One vector per text; raises ``NotFound`` when no ready replica serves the model (as
        ``/v1/embeddings`` answers), ``Unavailable`` (with ``retry_after``) when one does but
        cannot answer now."""
        ...

    async def serves(self, principal: Principal, model: str) -> bool:
        """Whether ``model`` is one the caller may embed with now."""
        ...


class NearestSearch(Protocol):
    @property
    def kind(self) -> str:
        """``usearch`` (in-process) or ``pgvector``."""
        ...

    async def nearest(
        self, *, collection_id: str, dims: int, vector: np.ndarray, k: int
    ) -> list[tuple[int, float]]:
        """Up to ``k`` labels nearest ``vector`` with their cosine similarity, best first (an
        in-process index may also return labels of items deleted elsewhere)."""
        ...

    def added(self, collection_id: str, labels: Sequence[int], vectors: np.ndarray) -> None:
        """Items this process just wrote."""
        ...

    def removed(self, collection_id: str, labels: Sequence[int]) -> None:
        """Items this process just deleted."""
        ...

    async def dropped(self, collection_id: str) -> None:
        """The collection was deleted."""
        ...

    def save_all(self) -> None:
        """Shutting down: keep what is worth keeping."""
        ...
