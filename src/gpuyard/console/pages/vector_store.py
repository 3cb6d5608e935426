"""The vector store: collections (list, create, rename, delete) and one collection's page: its
files (upload with progress; their status polled until each is completed or failed), its items
(a page at a time; add, delete), search with scores, and RAG chat with the sources it used.

Everything is the Vultr-shaped API under ``/v1/vector_store`` and ``/v1/chat/completions/RAG``
with the signed-in key (docs/vector-store.md); its refusals are shown in its words.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.responses import Response
from starlette.routing import Route

from gpuyard.console.pages.playground import model_ids
from gpuyard.console.pages.wrap import Wrap
from gpuyard.console.web import InvalidForm, NavItem, Visit, action, page, text

NAV = NavItem("/vector-store", "Vector store")
ITEMS_PAGE = 50
PENDING = ("enqueued", "processing")
STORE = "/v1/vector_store"


async def view(visit: Visit, error: str | None = None, status: int = 200) -> Response:
    collections = (await visit.api.get(STORE))["collections"]
    return visit.render(
        "vector_store.html",
        status=status,
        error=error,
        collections=collections,
        models=await model_ids(visit),
        form=await visit.form() if error else {},
    )


async def create(visit: Visit) -> str:
    form = await visit.form()
    body: dict[str, Any] = {"name": form.get("name", "").strip()}
    if model := text(form, "embedding_model"):
        body["embedding_model"] = model
    made = (await visit.api.post(STORE, body))["collection"]
    return f"/vector-store/{made['id']}"


def _cid(visit: Visit) -> str:
    return str(visit.request.path_params["collection_id"])


def _here(visit: Visit, rest: str = "") -> str:
    return f"{STORE}/{_cid(visit)}{rest}"


async def detail(
    visit: Visit, error: str | None = None, status: int = 200, **shown: Any
) -> Response:
    api = visit.api
    collection = (await api.get(_here(visit)))["collection"]
    files = (await api.get(_here(visit, "/files")))["files"]
    cursor = visit.request.query_params.get("cursor")
    items = await api.get(_here(visit, "/items"), limit=ITEMS_PAGE, cursor=cursor)
    return visit.render(
        "collection.html",
        status=status,
        error=error,
        collection=collection,
        files=files,
        pending=any(f["status"] in PENDING for f in files),
        items=items["items"],
        next_cursor=items.get("next_cursor"),
        paged=bool(cursor),
        # For RAG: the chat models first (the collection's embedding model last).
        models=sorted(await model_ids(visit), key=lambda m: m == collection["embedding_model"]),
        form=await visit.form() if visit.request.method == "POST" else {},
        **shown,
    )


async def rename(visit: Visit) -> str:
    form = await visit.form()
    await visit.api.put(_here(visit), {"name": form.get("name", "").strip()})
    return f"/vector-store/{_cid(visit)}"


async def delete(visit: Visit) -> str:
    await visit.api.delete(_here(visit))
    return "/vector-store"


async def upload(visit: Visit) -> str:
    found = (await visit.request.form()).get("file")
    if not isinstance(found, UploadFile) or not found.filename:
        raise InvalidForm("Choose a file to upload.")
    data = await found.read()
    media = found.content_type or "application/octet-stream"
    await visit.api.upload(_here(visit, "/files"), found.filename, data, media)
    return f"/vector-store/{_cid(visit)}"


async def delete_file(visit: Visit) -> str:
    await visit.api.delete(_here(visit, f"/files/{visit.request.path_params['file_id']}"))
    return f"/vector-store/{_cid(visit)}"


async def add_item(visit: Visit) -> str:
    form = await visit.form()
    body = {"content": form.get("content", ""), "description": text(form, "description")}
    await visit.api.post(_here(visit, "/items"), {k: v for k, v in body.items() if v is not None})
    return f"/vector-store/{_cid(visit)}"


async def delete_item(visit: Visit) -> str:
    await visit.api.delete(_here(visit, f"/items/{visit.request.path_params['item_id']}"))
    return f"/vector-store/{_cid(visit)}"


async def search(visit: Visit) -> Response:
    form = await visit.form()
    found = await visit.api.post(_here(visit, "/search"), {"input": form.get("input", "")})
    return await detail(visit, results=found["results"], searched=True)


async def rag(visit: Visit) -> Response:
    form = await visit.form()
    question = text(form, "question")
    if question is None:
        raise InvalidForm("Type a question.")
    body = {
        "collection": _cid(visit),
        "model": form.get("model", ""),
        "messages": [{"role": "user", "content": question}],
    }
    answer = await visit.api.post("/v1/chat/completions/RAG", body)
    reply = (answer.get("choices") or [{}])[0].get("message") or {}
    return await detail(
        visit, answer=reply.get("content") or "", sources=answer.get("sources") or []
    )


def routes(wrap: Wrap) -> list[Route]:
    one = NAV.path + "/{collection_id}"
    return [
        Route(NAV.path, wrap(page(view)), methods=["GET"]),
        Route(NAV.path, wrap(action(view, create)), methods=["POST"]),
        Route(one, wrap(page(detail)), methods=["GET"]),
        Route(one, wrap(action(detail, rename)), methods=["POST"]),
        Route(one + "/delete", wrap(action(detail, delete)), methods=["POST"]),
        Route(one + "/files", wrap(action(detail, upload)), methods=["POST"]),
        Route(one + "/files/{file_id}/delete", wrap(action(detail, delete_file)), methods=["POST"]),
        Route(one + "/items", wrap(action(detail, add_item)), methods=["POST"]),
        Route(one + "/items/{item_id}/delete", wrap(action(detail, delete_item)), methods=["POST"]),
        Route(one + "/search", wrap(action(detail, search)), methods=["POST"]),
        Route(one + "/rag", wrap(action(detail, rag)), methods=["POST"]),
    ]
