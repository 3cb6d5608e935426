"""The vector store's bodies and answers in Vultr's shapes (``{"collection": …}``,
``{"items": […]}``, ``{"results": […], "usage": …}``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from gpuyard.server.schemas.common import reject_null


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CollectionCreate(_Body):
    name: str = Field(max_length=200, description="The collection's name")
    embedding_model: str | None = Field(
        default=None,
        max_length=200,
        description="The embedding model of its items; default: the operator's "
        "(`all-MiniLM-L6-v2` unless configured)",
    )


class CollectionUpdate(_Body):
    name: str | None = Field(default=None, max_length=200)
    embedding_model: str | None = Field(
        default=None, max_length=200, description="Only while the collection has no items"
    )
    _no_null = reject_null("name", "embedding_model")


class ItemCreate(_Body):
    content: str = Field(description="The text to embed and keep")
    description: str | None = Field(
        default=None, description="Default: the content, shortened to 100 characters"
    )


class ItemUpdate(_Body):
    description: str = Field(description="The item's new description")


class SearchRequest(_Body):
    input: str = Field(description="The text to search the collection's items for")


class UsageOut(BaseModel):
    prompt_tokens: int
    total_tokens: int


class CollectionOut(BaseModel):
    id: str
    name: str
    embedding_model: str
    dimensions: int | None
    date_created: datetime
    date_updated: datetime


class CollectionAnswer(BaseModel):
    collection: CollectionOut


class CollectionList(BaseModel):
    collections: list[CollectionOut]


class ItemOut(BaseModel):
    id: str
    content: str
    description: str
    file_id: str | None = Field(description="The file this item is a chunk of, if any")
    date_created: datetime
    date_updated: datetime


class ItemAnswer(BaseModel):
    item: ItemOut


class ItemAdded(BaseModel):
    item: ItemOut
    usage: UsageOut


class ItemList(BaseModel):
    items: list[ItemOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: done")


class SearchResult(BaseModel):
    id: str
    content: str
    description: str
    score: float = Field(description="Cosine similarity to the input, 1 the closest")


class SearchAnswer(BaseModel):
    results: list[SearchResult]
    usage: UsageOut


class FileOut(BaseModel):
    id: str
    filename: str
    kind: str = Field(description="text, markdown, html, pdf or docx")
    size: int = Field(description="Bytes uploaded")
    status: str = Field(description="enqueued, processing, completed or failed")
    status_reason: str | None = Field(description="Why it failed")
    items: int = Field(description="Items made of its chunks")
    tokens: int = Field(description="Tokens its chunks' embeddings took")
    date_created: datetime
    date_updated: datetime


class FileAnswer(BaseModel):
    file: FileOut


class FileList(BaseModel):
    files: list[FileOut]
