"""Turns uploaded vector store files into items: ``enqueued`` -> ``processing`` (claimed) ->
``completed`` (its chunks are items naming the file, written in one transaction with the
file's counts) or ``failed`` (``status_reason`` says why, and no item was written).

The text is extracted, chunked and embedded by ``ingest`` (the vector store's ``file_items``,
handed in by the runner: controllers import nothing of ``vectorstore``), outside any
transaction. A file that cannot be read fails at once; an embedding model that cannot answer
now is retried after its ``Retry-After`` (or 30 s when no replica serves it), the file staying
``processing``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PermanentError,
    TemporaryError,
    Unavailable,
)
from gpuyard.server import orm
from gpuyard.server.controllers.base import Reconciler
from gpuyard.server.services import pgvector, vector_rows

MAX_REASON = 500
NOT_SERVED_RETRY_S = 30.0  # a file whose embedding model nobody serves now is tried again then


class Chunk(Protocol):
    @property
    def content(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def tokens(self) -> int: ...
    @property
    def vector(self) -> bytes: ...


Ingest = Callable[..., Awaitable[Sequence[Chunk]]]  # (org_id=, key_id=, model=, kind=, data=)


@dataclass(frozen=True, slots=True)
class FileWork:
    id: str
    org_id: str
    key_id: str
    collection_id: str
    model: str
    kind: str
    data: bytes

    def __repr__(self) -> str:  # the log names the file, not its bytes
        return f"FileWork({self.id}, {self.kind}, {len(self.data)} bytes)"


class VectorFileController(Reconciler[orm.VectorFile, FileWork, list[vector_rows.ItemRow]]):
    name = "vector-files"
    model = orm.VectorFile
    batch_size = 2  # files are large, and each is many embedding calls
    lease = timedelta(minutes=5)

    def __init__(
        self, *, ingest: Ingest, with_pgvector: Callable[[], bool] = lambda: False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.ingest = ingest
        self.with_pgvector = with_pgvector  # also write the embeddings for pgvector

    def due(self) -> ColumnElement[bool]:
        return orm.VectorFile.status.in_(("enqueued", "processing"))

    def snapshot(self, row: orm.VectorFile) -> FileWork:
        raise NotImplementedError("load() reads the collection too")

    async def load(self, session: AsyncSession, row: orm.VectorFile) -> FileWork:
        model = await session.scalar(
            select(orm.VectorCollection.embedding_model).where(
                orm.VectorCollection.id == row.collection_id
            )
        )
        row.status = "processing"
        row.updated_at = self.clock.now()
        return FileWork(
            id=row.id,
            org_id=row.org_id,
            key_id=row.key_id,
            collection_id=row.collection_id,
            model=model or "",
            kind=row.kind,
            data=bytes(row.data or b""),
        )

    async def process(self, item: FileWork) -> list[vector_rows.ItemRow]:
        try:
            chunks = await self.ingest(
                org_id=item.org_id,
                key_id=item.key_id,
                model=item.model,
                kind=item.kind,
                data=item.data,
            )
        except InvalidRequest as exc:
            raise PermanentError(exc.message) from exc
        except Unavailable as exc:
            raise TemporaryError(exc.message, delay=exc.retry_after or 5.0) from exc
        except NotFound as exc:  # no replica serves the model now: it may come back
            raise TemporaryError(exc.message, delay=NOT_SERVED_RETRY_S) from exc
        return [vector_rows.ItemRow(c.content, c.description, c.tokens, c.vector) for c in chunks]

    async def apply(
        self,
        session: AsyncSession,
        row: orm.VectorFile,
        item: FileWork,
        result: list[vector_rows.ItemRow],
    ) -> None:
        try:
            items = await vector_rows.add_items(
                session,
                clock=self.clock,
                org_id=item.org_id,
                collection_id=item.collection_id,
                items=result,
                dimensions=len(result[0].vector) // 4,
                file_id=item.id,
            )
        except Conflict as exc:  # the collection changed model since: nothing written
            self._failed(row, exc.message)
            return
        if self.with_pgvector():
            await pgvector.index_items(
                session,
                collection_id=item.collection_id,
                dims=len(result[0].vector) // 4,
                rows=[(i.pk, i.vector) for i in items],
            )
        row.status = "completed"
        row.status_reason = None
        row.items = len(result)
        row.tokens = sum(r.tokens for r in result)
        row.data = None
        row.updated_at = self.clock.now()

    async def fail(
        self, session: AsyncSession, row: orm.VectorFile, item: FileWork, reason: str
    ) -> None:
        self._failed(row, reason)

    def _failed(self, row: orm.VectorFile, reason: str) -> None:
        row.status = "failed"
        row.status_reason = reason[:MAX_REASON]
        row.data = None
        row.updated_at = self.clock.now()
