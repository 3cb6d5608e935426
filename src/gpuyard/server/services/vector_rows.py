"""The vector store's rows: collections, items and files, every query scoped to an org (another
org's collection or item reads as absent). The vector store itself (vectorstore/) reaches these
through its ``VectorRows`` port (server/vector_ports.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.core.errors import Conflict, NotFound
from gpuyard.core.ids import new_id
from gpuyard.server import orm
from gpuyard.server.services.wakeups import wake

VECTOR_BATCH = 5_000  # vectors read at a time when an index catches up


class ItemRow(NamedTuple):
    content: str
    description: str
    tokens: int
    vector: bytes


async def create_collection(
    session: AsyncSession, *, clock: Clock, org_id: str, name: str, model: str
) -> orm.VectorCollection:
    now = clock.now()
    row = orm.VectorCollection(
        id=new_id("col"),
        org_id=org_id,
        name=name,
        embedding_model=model,
        dimensions=None,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def list_collections(session: AsyncSession, *, org_id: str) -> list[orm.VectorCollection]:
    rows = await session.scalars(
        select(orm.VectorCollection)
        .where(orm.VectorCollection.org_id == org_id)
        .order_by(orm.VectorCollection.created_at, orm.VectorCollection.pk)
    )
    return list(rows.all())


async def get_collection(
    session: AsyncSession, *, org_id: str, collection_id: str, for_update: bool = False
) -> orm.VectorCollection | None:
    query = select(orm.VectorCollection).where(
        orm.VectorCollection.id == collection_id, orm.VectorCollection.org_id == org_id
    )
    if for_update:
        query = query.with_for_update()
    row: orm.VectorCollection | None = await session.scalar(query)
    return row


async def update_collection(
    session: AsyncSession,
    *,
    clock: Clock,
    org_id: str,
    collection_id: str,
    name: str | None,
    model: str | None,
) -> orm.VectorCollection | None:
    row = await get_collection(session, org_id=org_id, collection_id=collection_id, for_update=True)
    if row is None:
        return None
    if model is not None and model != row.embedding_model:
        has_items = await session.scalar(
            select(orm.VectorItem.pk).where(orm.VectorItem.collection_id == collection_id).limit(1)
        )
        if has_items is not None:
            raise Conflict(
                "the embedding model of a collection that has items cannot change",
                code="collection_not_empty",
                param="embedding_model",
            )
        row.embedding_model = model
        row.dimensions = None
    if name is not None:
        row.name = name
    row.updated_at = clock.now()
    await session.flush()
    return row


async def delete_collection(session: AsyncSession, *, org_id: str, collection_id: str) -> bool:
    row = await get_collection(session, org_id=org_id, collection_id=collection_id, for_update=True)
    if row is None:
        return False
    for table in (orm.VectorItem, orm.VectorFile):
        await session.execute(delete(table).where(table.collection_id == collection_id))
    await session.delete(row)
    await session.flush()
    return True


async def add_items(
    session: AsyncSession,
    *,
    clock: Clock,
    org_id: str,
    collection_id: str,
    items: Sequence[ItemRow],
    dimensions: int,
    file_id: str | None = None,
) -> list[orm.VectorItem]:
    """All or none. The collection's row is locked so that two first items of different
    dimensions cannot both be kept."""
    collection = await get_collection(
        session, org_id=org_id, collection_id=collection_id, for_update=True
    )
    if collection is None:
        raise NotFound(f"no collection {collection_id}", code="collection_not_found")
    if collection.dimensions is None:
        collection.dimensions = dimensions
    elif collection.dimensions != dimensions:
        raise Conflict(
            f"the collection holds {collection.dimensions}-dimensional vectors; its embedding "
            f"model answered {dimensions}",
            code="dimensions_mismatch",
        )
    now = clock.now()
    rows = [
        orm.VectorItem(
            id=new_id("itm"),
            collection_id=collection_id,
            org_id=org_id,
            file_id=file_id,
            content=item.content,
            description=item.description,
            tokens=item.tokens,
            vector=item.vector,
            created_at=now,
            updated_at=now,
        )
        for item in items
    ]
    session.add_all(rows)
    await session.flush()
    return rows


def _item_query(org_id: str, collection_id: str) -> Select[orm.VectorItem]:
    return select(orm.VectorItem).where(
        orm.VectorItem.collection_id == collection_id, orm.VectorItem.org_id == org_id
    )


async def list_items(
    session: AsyncSession, *, org_id: str, collection_id: str, after: int, limit: int
) -> list[orm.VectorItem]:
    rows = await session.scalars(
        _item_query(org_id, collection_id)
        .where(orm.VectorItem.pk > after)
        .order_by(orm.VectorItem.pk)
        .limit(limit)
    )
    return list(rows.all())


async def get_item(
    session: AsyncSession, *, org_id: str, collection_id: str, item_id: str
) -> orm.VectorItem | None:
    row: orm.VectorItem | None = await session.scalar(
        _item_query(org_id, collection_id).where(orm.VectorItem.id == item_id)
    )
    return row


async def describe_item(
    session: AsyncSession,
    *,
    clock: Clock,
    org_id: str,
    collection_id: str,
    item_id: str,
    description: str,
) -> orm.VectorItem | None:
    row = await get_item(session, org_id=org_id, collection_id=collection_id, item_id=item_id)
    if row is None:
        return None
    row.description = description
    row.updated_at = clock.now()
    await session.flush()
    return row


async def delete_item(
    session: AsyncSession, *, org_id: str, collection_id: str, item_id: str
) -> int | None:
    pk: int | None = await session.scalar(
        delete(orm.VectorItem)
        .where(
            orm.VectorItem.id == item_id,
            orm.VectorItem.collection_id == collection_id,
            orm.VectorItem.org_id == org_id,
        )
        .returning(orm.VectorItem.pk)
    )
    return pk


async def item_pks(session: AsyncSession, *, collection_id: str) -> list[int]:
    rows = await session.scalars(
        select(orm.VectorItem.pk).where(orm.VectorItem.collection_id == collection_id)
    )
    return list(rows.all())


async def vectors(
    session: AsyncSession,
    *,
    collection_id: str,
    pks: Sequence[int] | None = None,
    after: int = 0,
) -> list[tuple[int, bytes]]:
    """``(pk, vector)`` of the given items, or of at most ``VECTOR_BATCH`` items past
    ``after``, in ``pk`` order."""
    query = select(orm.VectorItem.pk, orm.VectorItem.vector).where(
        orm.VectorItem.collection_id == collection_id
    )
    if pks is not None:
        query = query.where(orm.VectorItem.pk.in_(list(pks)))
    else:
        query = query.where(orm.VectorItem.pk > after).limit(VECTOR_BATCH)
    result = await session.execute(query.order_by(orm.VectorItem.pk))
    return [(pk, bytes(vector)) for pk, vector in result.all()]


async def count_items(session: AsyncSession, *, collection_id: str) -> int:
    return int(
        await session.scalar(
            select(func.count()).where(orm.VectorItem.collection_id == collection_id)
        )
        or 0
    )


async def add_file(
    session: AsyncSession,
    *,
    clock: Clock,
    org_id: str,
    key_id: str,
    collection_id: str,
    filename: str,
    kind: str,
    data: bytes,
) -> orm.VectorFile | None:
    """The file, enqueued; its controller is woken when the transaction commits."""
    if await get_collection(session, org_id=org_id, collection_id=collection_id) is None:
        return None
    now = clock.now()
    row = orm.VectorFile(
        id=new_id("file"),
        collection_id=collection_id,
        org_id=org_id,
        key_id=key_id,
        filename=filename,
        kind=kind,
        size=len(data),
        data=data,
        status="enqueued",
        items=0,
        tokens=0,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    wake(session, row)
    await session.flush()
    return row


async def list_files(
    session: AsyncSession, *, org_id: str, collection_id: str
) -> list[orm.VectorFile]:
    rows = await session.scalars(
        select(orm.VectorFile)
        .where(orm.VectorFile.collection_id == collection_id, orm.VectorFile.org_id == org_id)
        .order_by(orm.VectorFile.created_at, orm.VectorFile.pk)
    )
    return list(rows.all())


async def get_file(
    session: AsyncSession, *, org_id: str, collection_id: str, file_id: str
) -> orm.VectorFile | None:
    row: orm.VectorFile | None = await session.scalar(
        select(orm.VectorFile).where(
            orm.VectorFile.id == file_id,
            orm.VectorFile.collection_id == collection_id,
            orm.VectorFile.org_id == org_id,
        )
    )
    return row


async def delete_file(
    session: AsyncSession, *, org_id: str, collection_id: str, file_id: str
) -> list[int] | None:
    """Delete the file and its items; their pks, None when there was no such file."""
    row = await get_file(session, org_id=org_id, collection_id=collection_id, file_id=file_id)
    if row is None:
        return None
    pks = await session.scalars(
        delete(orm.VectorItem)
        .where(orm.VectorItem.file_id == file_id, orm.VectorItem.collection_id == collection_id)
        .returning(orm.VectorItem.pk)
    )
    labels = list(pks.all())
    await session.delete(row)
    await session.flush()
    return labels
