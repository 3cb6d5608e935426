"""The vector store of the Vultr Inference API (``/v1/vector_store``): collections, their items and
search, as thin routes over ``VectorStore`` (vectorstore/service.py). Errors are in the OpenAI
shape, as on every inference route."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, Security, UploadFile

from gpuyard.core.errors import InvalidRequest
from gpuyard.server.deps import bearer_key
from gpuyard.server.errors import register_openai_paths
from gpuyard.server.routers.inference import Caller, openai_errors
from gpuyard.server.schemas.vector_store import (
    CollectionAnswer,
    CollectionCreate,
    CollectionList,
    CollectionOut,
    CollectionUpdate,
    FileAnswer,
    FileList,
    FileOut,
    ItemAdded,
    ItemAnswer,
    ItemCreate,
    ItemList,
    ItemOut,
    ItemUpdate,
    SearchAnswer,
    SearchRequest,
    SearchResult,
    UsageOut,
)
from gpuyard.vectorstore.records import Collection, File, Item, Usage
from gpuyard.vectorstore.service import VectorStore

router = APIRouter(tags=["vector store"], dependencies=[Security(bearer_key)])
register_openai_paths("/v1/vector_store")
MAX_PAGE = 1000


def vector_store(request: Request) -> VectorStore:
    store: VectorStore = request.app.state.ctx.vectors
    return store


Store = Annotated[VectorStore, Depends(vector_store)]


def _collection(c: Collection) -> CollectionOut:
    return CollectionOut(
        id=c.id,
        name=c.name,
        embedding_model=c.embedding_model,
        dimensions=c.dimensions,
        date_created=c.created_at,
        date_updated=c.updated_at,
    )


def _item(i: Item) -> ItemOut:
    return ItemOut(
        id=i.id,
        content=i.content,
        description=i.description,
        file_id=i.file_id,
        date_created=i.created_at,
        date_updated=i.updated_at,
    )


def _file(f: File) -> FileOut:
    return FileOut(
        id=f.id,
        filename=f.filename,
        kind=f.kind,
        size=f.size,
        status=f.status,
        status_reason=f.status_reason,
        items=f.items,
        tokens=f.tokens,
        date_created=f.created_at,
        date_updated=f.updated_at,
    )


def _usage(u: Usage) -> UsageOut:
    return UsageOut(prompt_tokens=u.prompt_tokens, total_tokens=u.prompt_tokens)


@router.get("/v1/vector_store", responses=openai_errors(401, 403))
async def list_collections(principal: Caller, store: Store) -> CollectionList:
    """Your org's collections, oldest first."""
    return CollectionList(collections=[_collection(c) for c in await store.collections(principal)])


@router.post("/v1/vector_store", status_code=201, responses=openai_errors(400, 401, 403))
async def create_collection(
    body: CollectionCreate, principal: Caller, store: Store
) -> CollectionAnswer:
    made = await store.create_collection(principal, name=body.name, model=body.embedding_model)
    return CollectionAnswer(collection=_collection(made))


@router.get("/v1/vector_store/{collection_id}", responses=openai_errors(401, 403, 404))
async def get_collection(collection_id: str, principal: Caller, store: Store) -> CollectionAnswer:
    return CollectionAnswer(
        collection=_collection(await store.collection(principal, collection_id))
    )


@router.put("/v1/vector_store/{collection_id}", responses=openai_errors(400, 401, 403, 404, 409))
async def update_collection(
    collection_id: str, body: CollectionUpdate, principal: Caller, store: Store
) -> CollectionAnswer:
    """Rename (the id stays), or bind an empty collection to another embedding model."""
    updated = await store.update_collection(
        principal, collection_id, name=body.name, model=body.embedding_model
    )
    return CollectionAnswer(collection=_collection(updated))


@router.delete(
    "/v1/vector_store/{collection_id}", status_code=204, responses=openai_errors(401, 403, 404)
)
async def delete_collection(collection_id: str, principal: Caller, store: Store) -> Response:
    """The collection and every item in it."""
    await store.delete_collection(principal, collection_id)
    return Response(status_code=204)


@router.post(
    "/v1/vector_store/{collection_id}/search", responses=openai_errors(400, 401, 403, 404, 503)
)
async def search(
    collection_id: str, body: SearchRequest, principal: Caller, store: Store
) -> SearchAnswer:
    """The items closest in meaning to ``input``, best first."""
    found = await store.search(principal, collection_id, query=body.input)
    return SearchAnswer(
        results=[
            SearchResult(
                id=h.item.id,
                content=h.item.content,
                description=h.item.description,
                score=round(h.score, 6),
            )
            for h in found.hits
        ],
        usage=_usage(found.usage),
    )


@router.get("/v1/vector_store/{collection_id}/items", responses=openai_errors(400, 401, 403, 404))
async def list_items(
    collection_id: str,
    principal: Caller,
    store: Store,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
) -> ItemList:
    """The collection's items in the order they were added, a page at a time."""
    after = 0
    if cursor is not None:
        if not (cursor.isascii() and cursor.isdigit()):  # not "²": int() refuses it
            raise InvalidRequest("cursor is not one this API gave", param="cursor")
        after = int(cursor)
    items = await store.items(principal, collection_id, after=after, limit=limit)
    next_cursor = str(items[-1].label) if len(items) == limit else None
    return ItemList(items=[_item(i) for i in items], next_cursor=next_cursor)


@router.post(
    "/v1/vector_store/{collection_id}/items",
    status_code=201,
    responses=openai_errors(400, 401, 403, 404, 409, 503),
)
async def add_item(
    collection_id: str, body: ItemCreate, principal: Caller, store: Store
) -> ItemAdded:
    added = await store.add_item(
        principal, collection_id, content=body.content, description=body.description
    )
    return ItemAdded(item=_item(added.item), usage=_usage(added.usage))


@router.get(
    "/v1/vector_store/{collection_id}/items/{item_id}", responses=openai_errors(401, 403, 404)
)
async def get_item(collection_id: str, item_id: str, principal: Caller, store: Store) -> ItemAnswer:
    return ItemAnswer(item=_item(await store.item(principal, collection_id, item_id)))


@router.put(
    "/v1/vector_store/{collection_id}/items/{item_id}",
    responses=openai_errors(400, 401, 403, 404),
)
async def update_item(
    collection_id: str, item_id: str, body: ItemUpdate, principal: Caller, store: Store
) -> ItemAnswer:
    updated = await store.describe_item(
        principal, collection_id, item_id, description=body.description
    )
    return ItemAnswer(item=_item(updated))


@router.delete(
    "/v1/vector_store/{collection_id}/items/{item_id}",
    status_code=204,
    responses=openai_errors(401, 403, 404),
)
async def delete_item(
    collection_id: str, item_id: str, principal: Caller, store: Store
) -> Response:
    await store.delete_item(principal, collection_id, item_id)
    return Response(status_code=204)


@router.get("/v1/vector_store/{collection_id}/files", responses=openai_errors(401, 403, 404))
async def list_files(collection_id: str, principal: Caller, store: Store) -> FileList:
    return FileList(files=[_file(f) for f in await store.files(principal, collection_id)])


@router.post(
    "/v1/vector_store/{collection_id}/files",
    status_code=201,
    responses=openai_errors(400, 401, 403, 404, 413, 415),
)
async def add_file(
    collection_id: str, file: UploadFile, principal: Caller, store: Store
) -> FileAnswer:
    """Upload (multipart, field ``file``) a text, Markdown, HTML, PDF or DOCX file, up to the
    server's body limit. It is ``enqueued``; its text becomes items in the background."""
    made = await store.add_file(
        principal,
        collection_id,
        filename=file.filename or "",
        content_type=file.content_type,
        data=await file.read(),
    )
    return FileAnswer(file=_file(made))


@router.get(
    "/v1/vector_store/{collection_id}/files/{file_id}", responses=openai_errors(401, 403, 404)
)
async def get_file(collection_id: str, file_id: str, principal: Caller, store: Store) -> FileAnswer:
    return FileAnswer(file=_file(await store.file(principal, collection_id, file_id)))


@router.delete(
    "/v1/vector_store/{collection_id}/files/{file_id}",
    status_code=204,
    responses=openai_errors(401, 403, 404),
)
async def delete_file(
    collection_id: str, file_id: str, principal: Caller, store: Store
) -> Response:
    """The file and every item made of it."""
    await store.delete_file(principal, collection_id, file_id)
    return Response(status_code=204)
