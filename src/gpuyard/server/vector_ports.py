"""The vector store's ports (vectorstore/ports.py) filled in: its rows over the database (each
call its own short session, as the gateway's ports) and its embeddings through the gateway, so
an embedding call is routed, rate limited and logged like any other, and made with it."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gpuyard.core.clock import Clock
from gpuyard.core.errors import GpuyardError, NotFound, Unavailable
from gpuyard.core.principal import Principal
from gpuyard.gateway.proxy import RETRY_AFTER_S
from gpuyard.gateway.service import Gateway
from gpuyard.server import orm
from gpuyard.server.db import read_session, write_session
from gpuyard.server.services import pgvector, vector_found, vector_rows
from gpuyard.vectorstore.ann import Indexes
from gpuyard.vectorstore.ports import NearestSearch
from gpuyard.vectorstore.records import Collection, Embedded, File, Item, NewFile, NewItem
from gpuyard.vectorstore.service import VectorStore

log = logging.getLogger(__name__)
BACKFILL_BATCH = 1_000


def _collection(row: orm.VectorCollection) -> Collection:
    return Collection(
        id=row.id,
        org_id=row.org_id,
        name=row.name,
        embedding_model=row.embedding_model,
        dimensions=row.dimensions,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _item(row: orm.VectorItem) -> Item:
    return Item(
        id=row.id,
        collection_id=row.collection_id,
        label=row.pk,
        content=row.content,
        description=row.description,
        tokens=row.tokens,
        file_id=row.file_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _file(row: orm.VectorFile) -> File:
    return File(
        id=row.id,
        collection_id=row.collection_id,
        filename=row.filename,
        kind=row.kind,
        size=row.size,
        status=row.status,
        status_reason=row.status_reason,
        items=row.items,
        tokens=row.tokens,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class DatabaseVectorRows:
    """``VectorRows`` over services/vector_rows.py."""

    def __init__(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], clock: Clock
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._clock = clock
        self.pgvector = False  # also write each item's embedding for pgvector (DatabaseSearch)

    async def create_collection(self, *, org_id: str, name: str, model: str) -> Collection:
        async with write_session(self._sessions) as s:
            row = await vector_rows.create_collection(
                s, clock=self._clock, org_id=org_id, name=name, model=model
            )
            return _collection(row)

    async def collections(self, *, org_id: str) -> list[Collection]:
        async with read_session(self._sessions) as s:
            return [_collection(r) for r in await vector_rows.list_collections(s, org_id=org_id)]

    async def collection(self, *, org_id: str, collection_id: str) -> Collection | None:
        row = await vector_found.collection(
            self._engine, org_id=org_id, collection_id=collection_id
        )
        return Collection(*row) if row else None

    async def update_collection(
        self, *, org_id: str, collection_id: str, name: str | None, model: str | None
    ) -> Collection | None:
        async with write_session(self._sessions) as s:
            row = await vector_rows.update_collection(
                s,
                clock=self._clock,
                org_id=org_id,
                collection_id=collection_id,
                name=name,
                model=model,
            )
            return _collection(row) if row else None

    async def delete_collection(self, *, org_id: str, collection_id: str) -> bool:
        async with write_session(self._sessions) as s:
            return await vector_rows.delete_collection(
                s, org_id=org_id, collection_id=collection_id
            )

    async def add_items(
        self, *, org_id: str, collection_id: str, items: Sequence[NewItem], dimensions: int
    ) -> list[Item]:
        async with write_session(self._sessions) as s:
            rows = await vector_rows.add_items(
                s,
                clock=self._clock,
                org_id=org_id,
                collection_id=collection_id,
                items=[
                    vector_rows.ItemRow(i.content, i.description, i.tokens, i.vector) for i in items
                ],
                dimensions=dimensions,
            )
            if self.pgvector:
                await pgvector.index_items(
                    s,
                    collection_id=collection_id,
                    dims=dimensions,
                    rows=[(r.pk, r.vector) for r in rows],
                )
            return [_item(r) for r in rows]

    async def items(self, *, org_id: str, collection_id: str, after: int, limit: int) -> list[Item]:
        async with read_session(self._sessions) as s:
            rows = await vector_rows.list_items(
                s, org_id=org_id, collection_id=collection_id, after=after, limit=limit
            )
            return [_item(r) for r in rows]

    async def item(self, *, org_id: str, collection_id: str, item_id: str) -> Item | None:
        async with read_session(self._sessions) as s:
            row = await vector_rows.get_item(
                s, org_id=org_id, collection_id=collection_id, item_id=item_id
            )
            return _item(row) if row else None

    async def describe_item(
        self, *, org_id: str, collection_id: str, item_id: str, description: str
    ) -> Item | None:
        async with write_session(self._sessions) as s:
            row = await vector_rows.describe_item(
                s,
                clock=self._clock,
                org_id=org_id,
                collection_id=collection_id,
                item_id=item_id,
                description=description,
            )
            return _item(row) if row else None

    async def delete_item(self, *, org_id: str, collection_id: str, item_id: str) -> int | None:
        async with write_session(self._sessions) as s:
            return await vector_rows.delete_item(
                s, org_id=org_id, collection_id=collection_id, item_id=item_id
            )

    async def items_by_label(
        self, *, org_id: str, collection_id: str, labels: Sequence[int]
    ) -> list[Item]:
        rows = await vector_found.items_by_pk(
            self._engine, org_id=org_id, collection_id=collection_id, pks=labels
        )
        return [Item(*row) for row in rows]

    async def labels(self, *, collection_id: str) -> list[int]:
        async with read_session(self._sessions) as s:
            return await vector_rows.item_pks(s, collection_id=collection_id)

    async def vectors(
        self, *, collection_id: str, labels: Sequence[int] | None = None, after: int = 0
    ) -> list[tuple[int, bytes]]:
        async with read_session(self._sessions) as s:
            return await vector_rows.vectors(
                s, collection_id=collection_id, pks=labels, after=after
            )

    async def add_file(
        self, *, org_id: str, key_id: str, collection_id: str, file: NewFile
    ) -> File | None:
        async with write_session(self._sessions) as s:
            row = await vector_rows.add_file(
                s,
                clock=self._clock,
                org_id=org_id,
                key_id=key_id,
                collection_id=collection_id,
                filename=file.filename,
                kind=file.kind,
                data=file.data,
            )
            return _file(row) if row else None

    async def files(self, *, org_id: str, collection_id: str) -> list[File]:
        async with read_session(self._sessions) as s:
            rows = await vector_rows.list_files(s, org_id=org_id, collection_id=collection_id)
            return [_file(r) for r in rows]

    async def file(self, *, org_id: str, collection_id: str, file_id: str) -> File | None:
        async with read_session(self._sessions) as s:
            row = await vector_rows.get_file(
                s, org_id=org_id, collection_id=collection_id, file_id=file_id
            )
            return _file(row) if row else None

    async def delete_file(
        self, *, org_id: str, collection_id: str, file_id: str
    ) -> list[int] | None:
        async with write_session(self._sessions) as s:
            return await vector_rows.delete_file(
                s, org_id=org_id, collection_id=collection_id, file_id=file_id
            )


class GatewayEmbedder:
    """``Embedder``: ``/v1/embeddings`` through the gateway, as the caller."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def serves(self, principal: Principal, model: str) -> bool:
        directory = self._gateway.directory
        if model in await directory.models(principal.org_id):
            return True
        await directory.refresh()  # a cluster ready a moment ago counts
        return model in await directory.models(principal.org_id)

    async def embed(self, principal: Principal, model: str, texts: Sequence[str]) -> Embedded:
        body = json.dumps({"model": model, "input": list(texts)}).encode()
        try:
            relay = await self._gateway.call(principal, "embeddings", body, [])
        except NotFound as exc:  # no ready replica serves it: as /v1/embeddings answers
            raise NotFound(
                f"the embedding model {model} is not served now (no ready replica you can use)",
                code="embedding_model_not_found",
            ) from exc
        except Unavailable as exc:
            raise _down(model, exc.message) from exc
        if relay.status != 200 or relay.body is None:
            raise _down(model, f"it answered {relay.status}")
        try:
            answer = json.loads(relay.body)
            data = sorted(answer["data"], key=lambda d: d["index"])
            vectors = [[float(x) for x in d["embedding"]] for d in data]
            tokens = int((answer.get("usage") or {}).get("prompt_tokens") or 0)
        except (ValueError, KeyError, TypeError) as exc:
            raise _down(model, "it answered something other than embeddings") from exc
        if len(vectors) != len(texts) or not vectors or not vectors[0]:
            raise _down(model, "it answered another number of embeddings")
        return Embedded(vectors=vectors, tokens=tokens)


def _down(model: str, why: str) -> GpuyardError:
    return Unavailable(
        f"the embedding model {model} cannot answer now: {why}",
        retry_after=RETRY_AFTER_S,
        code="embedding_model_unavailable",
    )


class PgVectorSearch:
    """``NearestSearch`` in Postgres (services/pgvector.py): nothing in this process to keep."""

    kind = "pgvector"

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._engine = engine
        self._sessions = sessions

    async def nearest(
        self, *, collection_id: str, dims: int, vector: np.ndarray, k: int
    ) -> list[tuple[int, float]]:
        return await pgvector.nearest(
            self._engine, collection_id=collection_id, dims=dims, vector=vector.tolist(), k=k
        )

    def added(self, collection_id: str, labels: Sequence[int], vectors: np.ndarray) -> None:
        pass  # written with the items

    def removed(self, collection_id: str, labels: Sequence[int]) -> None:
        pass  # deleted with the items

    async def dropped(self, collection_id: str) -> None:
        async with write_session(self._sessions) as s:
            await pgvector.drop_index(s, collection_id=collection_id)

    def save_all(self) -> None:
        pass


class DatabaseSearch:
    """``NearestSearch``: pgvector where ``prepare`` finds it usable (Postgres where
    ``CREATE EXTENSION vector`` succeeds), else the in-process indexes."""

    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        rows: DatabaseVectorRows,
        indexes: Indexes,
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._rows = rows
        self.current: NearestSearch = indexes
        self.why_not_pgvector: str | None = "not prepared"

    @property
    def kind(self) -> str:
        return self.current.kind

    async def prepare(self) -> None:
        """At start-up: use pgvector if it can be, after giving it the embeddings of items
        written before it was there."""
        self.why_not_pgvector = await pgvector.enable(self._engine)
        if self.why_not_pgvector is not None:
            log.info("vector search in process (no pgvector: %s)", self.why_not_pgvector)
            return
        self._rows.pgvector = True  # from now on every item's embedding goes in with it
        while True:
            async with write_session(self._sessions) as s:
                rows = await pgvector.missing(s, limit=BACKFILL_BATCH)
                by_collection: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
                for pk, cid, vector in rows:
                    by_collection[cid].append((pk, vector))
                for cid, found in by_collection.items():
                    await pgvector.index_items(
                        s, collection_id=cid, dims=len(found[0][1]) // 4, rows=found
                    )
            if len(rows) < BACKFILL_BATCH:
                break
        self.current = PgVectorSearch(self._engine, self._sessions)
        log.info("vector search in Postgres (pgvector)")

    async def nearest(
        self, *, collection_id: str, dims: int, vector: np.ndarray, k: int
    ) -> list[tuple[int, float]]:
        return await self.current.nearest(
            collection_id=collection_id, dims=dims, vector=vector, k=k
        )

    def added(self, collection_id: str, labels: Sequence[int], vectors: np.ndarray) -> None:
        self.current.added(collection_id, labels, vectors)

    def removed(self, collection_id: str, labels: Sequence[int]) -> None:
        self.current.removed(collection_id, labels)

    async def dropped(self, collection_id: str) -> None:
        await self.current.dropped(collection_id)

    def save_all(self) -> None:
        self.current.save_all()


def database_vector_store(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    gateway: Gateway,
    *,
    index_dir: Path | None,
    default_model: str,
) -> tuple[VectorStore, DatabaseSearch]:
    rows = DatabaseVectorRows(engine, sessions, clock)
    search = DatabaseSearch(engine, sessions, rows, Indexes(rows, index_dir))
    store = VectorStore(
        rows=rows,
        embedder=GatewayEmbedder(gateway),
        search=search,
        default_model=default_model,
    )
    return store, search
