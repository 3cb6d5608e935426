"""``VectorStore``: the vector store's rules over its ports (ports.py): the rows, the embedding
model, and the nearest-neighbour search (the in-process index of ann.py, or pgvector). Every
call is on behalf of a principal and sees only its org."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpuyard.core.errors import InvalidRequest, NotFound
from gpuyard.core.ids import is_id
from gpuyard.core.principal import Principal, Scope
from gpuyard.vectorstore.chunking import chunks
from gpuyard.vectorstore.extract import extract_text, kind_of
from gpuyard.vectorstore.ports import Embedder, NearestSearch, VectorRows
from gpuyard.vectorstore.records import Collection, File, Hit, Item, NewFile, NewItem, Usage

MAX_NAME = 200
MAX_CONTENT = 16_000  # characters of one item
MAX_DESCRIPTION = 2_000
SHORT_DESCRIPTION = 100  # a description left out is the content cut to this many characters
MAX_QUERY = 16_000
SEARCH_K = 10
OVERFETCH = 10  # extra candidates, for items another process deleted since the index looked
MAX_FILENAME = 255
EMBED_BATCH = 32  # chunks of a file embedded per call


@dataclass(frozen=True, slots=True)
class Added:
    item: Item
    usage: Usage


@dataclass(frozen=True, slots=True)
class Found:
    hits: list[Hit]
    usage: Usage


def unit_vectors(vectors: list[list[float]], dims: int | None = None) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or (dims is not None and matrix.shape[1] != dims):
        raise InvalidRequest("the embedding model answered vectors of another shape")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: np.ndarray = (matrix / norms).astype("<f4")
    return unit


def shortened(content: str) -> str:
    text = " ".join(content.split())
    return text if len(text) <= SHORT_DESCRIPTION else text[: SHORT_DESCRIPTION - 1] + "…"


def _text(value: str, *, param: str, limit: int) -> str:
    if not value.strip():
        raise InvalidRequest(f"{param} must not be empty", param=param)
    if len(value) > limit:
        raise InvalidRequest(f"{param} is longer than {limit} characters", param=param)
    return value


class VectorStore:
    def __init__(
        self, *, rows: VectorRows, embedder: Embedder, search: NearestSearch, default_model: str
    ) -> None:
        self.rows = rows
        self.embedder = embedder
        self.search_backend = search
        self.default_model = default_model

    # Collections

    async def create_collection(
        self, principal: Principal, *, name: str, model: str | None
    ) -> Collection:
        name = _text(name, param="name", limit=MAX_NAME)
        if model is not None:
            await self._check_model(principal, model)
        return await self.rows.create_collection(
            org_id=principal.org_id, name=name, model=model or self.default_model
        )

    async def collections(self, principal: Principal) -> list[Collection]:
        return await self.rows.collections(org_id=principal.org_id)

    async def collection(self, principal: Principal, collection_id: str) -> Collection:
        found = None
        if is_id(collection_id, "col"):
            found = await self.rows.collection(org_id=principal.org_id, collection_id=collection_id)
        if found is None:
            raise NotFound(f"no collection {collection_id}", code="collection_not_found")
        return found

    async def update_collection(
        self, principal: Principal, collection_id: str, *, name: str | None, model: str | None
    ) -> Collection:
        await self.collection(principal, collection_id)
        if name is not None:
            name = _text(name, param="name", limit=MAX_NAME)
        if model is not None:
            await self._check_model(principal, model)
        updated = await self.rows.update_collection(
            org_id=principal.org_id, collection_id=collection_id, name=name, model=model
        )
        if updated is None:
            raise NotFound(f"no collection {collection_id}", code="collection_not_found")
        return updated

    async def delete_collection(self, principal: Principal, collection_id: str) -> None:
        await self.collection(principal, collection_id)
        if not await self.rows.delete_collection(
            org_id=principal.org_id, collection_id=collection_id
        ):
            raise NotFound(f"no collection {collection_id}", code="collection_not_found")
        await self.search_backend.dropped(collection_id)

    async def _check_model(self, principal: Principal, model: str) -> None:
        if not await self.embedder.serves(principal, model):
            raise InvalidRequest(
                f"no embedding model {model} that you may use", param="embedding_model"
            )

    # Items

    async def add_item(
        self, principal: Principal, collection_id: str, *, content: str, description: str | None
    ) -> Added:
        content = _text(content, param="content", limit=MAX_CONTENT)
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise InvalidRequest(
                f"description is longer than {MAX_DESCRIPTION} characters", param="description"
            )
        collection = await self.collection(principal, collection_id)
        embedded = await self.embedder.embed(principal, collection.embedding_model, [content])
        vectors = unit_vectors(embedded.vectors)
        new = NewItem(
            content=content,
            description=description if description is not None else shortened(content),
            tokens=embedded.tokens,
            vector=vectors[0].tobytes(),
        )
        (item,) = await self.rows.add_items(
            org_id=principal.org_id,
            collection_id=collection_id,
            items=[new],
            dimensions=vectors.shape[1],
        )
        self.search_backend.added(collection_id, [item.label], vectors)
        return Added(item, Usage(embedded.tokens))

    async def items(
        self, principal: Principal, collection_id: str, *, after: int = 0, limit: int = 100
    ) -> list[Item]:
        await self.collection(principal, collection_id)
        return await self.rows.items(
            org_id=principal.org_id, collection_id=collection_id, after=after, limit=limit
        )

    async def item(self, principal: Principal, collection_id: str, item_id: str) -> Item:
        await self.collection(principal, collection_id)
        found = None
        if is_id(item_id, "itm"):
            found = await self.rows.item(
                org_id=principal.org_id, collection_id=collection_id, item_id=item_id
            )
        if found is None:
            raise NotFound(f"no item {item_id}", code="item_not_found")
        return found

    async def describe_item(
        self, principal: Principal, collection_id: str, item_id: str, *, description: str
    ) -> Item:
        await self.item(principal, collection_id, item_id)
        if len(description) > MAX_DESCRIPTION:
            raise InvalidRequest(
                f"description is longer than {MAX_DESCRIPTION} characters", param="description"
            )
        updated = await self.rows.describe_item(
            org_id=principal.org_id,
            collection_id=collection_id,
            item_id=item_id,
            description=description,
        )
        if updated is None:
            raise NotFound(f"no item {item_id}", code="item_not_found")
        return updated

    async def delete_item(self, principal: Principal, collection_id: str, item_id: str) -> None:
        await self.item(principal, collection_id, item_id)
        label = await self.rows.delete_item(
            org_id=principal.org_id, collection_id=collection_id, item_id=item_id
        )
        if label is None:
            raise NotFound(f"no item {item_id}", code="item_not_found")
        self.search_backend.removed(collection_id, [label])

    # Search

    async def search(
        self, principal: Principal, collection_id: str, *, query: str, k: int = SEARCH_K
    ) -> Found:
        query = _text(query, param="input", limit=MAX_QUERY)
        collection = await self.collection(principal, collection_id)
        if collection.dimensions is None:  # empty: nothing to find, nothing to embed
            return Found([], Usage(0))
        embedded = await self.embedder.embed(principal, collection.embedding_model, [query])
        vector = unit_vectors(embedded.vectors, collection.dimensions)[0]
        hits = await self.nearest(principal, collection, vector, k=k)
        return Found(hits, Usage(embedded.tokens))

    async def nearest(
        self, principal: Principal, collection: Collection, vector: np.ndarray, *, k: int
    ) -> list[Hit]:
        """The ``k`` items of ``collection`` nearest ``vector`` (a unit vector), best first."""
        if collection.dimensions is None:
            return []
        found = await self.search_backend.nearest(
            collection_id=collection.id, dims=collection.dimensions, vector=vector, k=k + OVERFETCH
        )
        items = await self.rows.items_by_label(
            org_id=principal.org_id,
            collection_id=collection.id,
            labels=[label for label, _ in found],
        )
        by_label = {item.label: item for item in items}
        found = sorted(found, key=lambda f: (-f[1], f[0]))  # ties in label order, however built
        hits = [Hit(by_label[label], score) for label, score in found if label in by_label]
        return hits[:k]

    # Files

    async def add_file(
        self,
        principal: Principal,
        collection_id: str,
        *,
        filename: str,
        content_type: str | None,
        data: bytes,
    ) -> File:
        """Keep the upload and enqueue it: its text becomes items in the background
        (``file_items``, called by the server's file controller)."""
        await self.collection(principal, collection_id)
        kind = kind_of(filename, content_type)
        if not data:
            raise InvalidRequest("the file is empty", param="file")
        name = (filename or "upload").rsplit("/", 1)[-1][-MAX_FILENAME:]
        made = await self.rows.add_file(
            org_id=principal.org_id,
            key_id=principal.key_id,
            collection_id=collection_id,
            file=NewFile(filename=name, kind=kind, data=data),
        )
        if made is None:
            raise NotFound(f"no collection {collection_id}", code="collection_not_found")
        return made

    async def files(self, principal: Principal, collection_id: str) -> list[File]:
        await self.collection(principal, collection_id)
        return await self.rows.files(org_id=principal.org_id, collection_id=collection_id)

    async def file(self, principal: Principal, collection_id: str, file_id: str) -> File:
        await self.collection(principal, collection_id)
        found = None
        if is_id(file_id, "file"):
            found = await self.rows.file(
                org_id=principal.org_id, collection_id=collection_id, file_id=file_id
            )
        if found is None:
            raise NotFound(f"no file {file_id}", code="file_not_found")
        return found

    async def delete_file(self, principal: Principal, collection_id: str, file_id: str) -> None:
        """The file and every item made of it."""
        await self.file(principal, collection_id, file_id)
        labels = await self.rows.delete_file(
            org_id=principal.org_id, collection_id=collection_id, file_id=file_id
        )
        if labels is None:
            raise NotFound(f"no file {file_id}", code="file_not_found")
        self.search_backend.removed(collection_id, labels)

    async def file_items(
        self, *, org_id: str, key_id: str, model: str, kind: str, data: bytes
    ) -> list[NewItem]:
        """A file's chunks, embedded with ``model`` as the key that uploaded it. Raises
        ``InvalidRequest`` when the file cannot be read or holds no text (it will never
        succeed), ``Unavailable`` when the model cannot answer now (it may later)."""
        pieces = chunks(extract_text(kind, data))
        if not pieces:
            raise InvalidRequest("the file holds no text", code="unreadable_file", param="file")
        uploader = Principal(
            key_id=key_id, org_id=org_id, scopes=frozenset({Scope.INFERENCE}), secret_hash=""
        )
        made: list[NewItem] = []
        for start in range(0, len(pieces), EMBED_BATCH):
            batch = pieces[start : start + EMBED_BATCH]
            embedded = await self.embedder.embed(uploader, model, batch)
            vectors = unit_vectors(embedded.vectors)
            share = embedded.tokens // len(batch)
            for i, (piece, vector) in enumerate(zip(batch, vectors, strict=True)):
                tokens = share + (embedded.tokens % len(batch) if i == 0 else 0)
                made.append(NewItem(piece, shortened(piece), tokens, vector.tobytes()))
        return made
