"""What the vector store hands back: collections, items and search hits (no vectors)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Collection:
    id: str
    org_id: str
    name: str
    embedding_model: str
    dimensions: int | None  # set by the first item; None while the collection is empty
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    collection_id: str
    label: int  # the item's key in the collection's approximate index
    content: str
    description: str
    tokens: int
    file_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class File:
    id: str
    collection_id: str
    filename: str
    kind: str
    size: int
    status: str  # enqueued, processing, completed, failed
    status_reason: str | None
    items: int
    tokens: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NewFile:
    filename: str
    kind: str
    data: bytes


@dataclass(frozen=True, slots=True)
class NewItem:
    content: str
    description: str
    tokens: int
    vector: bytes  # little-endian float32, unit length


@dataclass(frozen=True, slots=True)
class Hit:
    item: Item
    score: float  # cosine similarity, 1.0 the same direction


@dataclass(frozen=True, slots=True)
class Embedded:
    vectors: list[list[float]]
    tokens: int  # the prompt tokens the embedding model reported


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int

    def as_json(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens}
