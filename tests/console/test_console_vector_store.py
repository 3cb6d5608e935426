"""The console's vector store pages over real HTTP, on SQLite and Postgres: a collection made,
renamed and deleted in forms; a file uploaded, its status polled from enqueued to completed
(the file controller stepped), its items listed; search with scores; RAG chat with its sources;
refusals in the API's words, HTML in names and contents escaped, another org's collection 404."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.console.test_console_http import SCRIPT, csrf_of, signed_in
from tests.server.test_vector_files import controller
from tests.server.vector_kit import ENGINES, Vectors, started

ESCAPED = "&lt;script&gt;window.pwned=1&lt;/script&gt;"
POLLS = 'hx-trigger="every 1s"'


@pytest.fixture
async def vectors(db_url: str, tmp_path: Path) -> AsyncIterator[Vectors]:
    async with started(db_url, tmp_path, chat=True) as running:
        yield running


async def test_a_collection_from_upload_to_search_and_rag(vectors: Vectors) -> None:
    t = vectors.tenant
    browser = await signed_in(vectors.api, t.key)
    r = await browser.get("/console/vector-store")
    assert r.status_code == 200 and "No collections." in r.text
    assert '<option value="words">words</option>' in r.text  # the embedding model picker
    token = await csrf_of(browser, "/console/vector-store")

    r = await browser.post("/console/vector-store", data={"csrf": token, "name": " "})
    assert r.status_code == 400 and 'role="alert"' in r.text
    r = await browser.post(
        "/console/vector-store", data={"csrf": token, "name": "docs", "embedding_model": "nope"}
    )
    assert r.status_code == 400 and "nope" in r.text
    assert (await t.client.get("/v1/vector_store")).json()["collections"] == []  # nothing made

    r = await browser.post("/console/vector-store", data={"csrf": token, "name": SCRIPT})
    assert r.status_code == 303, r.text
    here = r.headers["location"]
    [made] = (await t.client.get("/v1/vector_store")).json()["collections"]
    assert here == f"/console/vector-store/{made['id']}" and made["name"] == SCRIPT
    listed = (await browser.get("/console/vector-store")).text
    assert ESCAPED in listed and SCRIPT not in listed
    page = (await browser.get(here)).text
    assert "No files." in page and "No items." in page and POLLS not in page

    # Upload: enqueued, the page polls; the controller embeds it; completed, polling stops.
    text = "\n\n".join(ENGINES).encode()
    r = await browser.post(
        f"{here}/files",
        data={"csrf": token},
        files={"file": ("engines.txt", text, "text/plain")},
    )
    assert r.status_code == 303, r.text
    page = (await browser.get(here)).text
    assert "engines.txt" in page and "s-enqueued" in page and POLLS in page
    assert await controller(vectors).step() == 1
    page = (await browser.get(here)).text
    assert "s-completed" in page and POLLS not in page
    [file] = (await t.client.get(f"/v1/vector_store/{made['id']}/files")).json()["files"]
    assert file["items"] >= 1 and file["id"] in page  # its items, each naming the file
    assert f'data-testid="file-items">{file["items"]}</td>' in page

    for name, data, media, status, words in (
        ("tool.exe", b"MZ", "application/octet-stream", 415, "is not text, Markdown, HTML"),
        ("empty.txt", b"", "text/plain", 400, "empty"),
    ):
        r = await browser.post(
            f"{here}/files", data={"csrf": token}, files={"file": (name, data, media)}
        )
        alert = re.search(r'role="alert">([^<]*)<', r.text)
        assert r.status_code == status and alert and words in alert.group(1), r.text
    r = await browser.post(f"{here}/files", data={"csrf": token})
    assert r.status_code == 400 and "Choose a file to upload." in r.text
    assert len((await t.client.get(f"/v1/vector_store/{made['id']}/files")).json()["files"]) == 1

    # A typed item, HTML in it escaped; search with scores, best first.
    r = await browser.post(f"{here}/items", data={"csrf": token, "content": f"oil {SCRIPT}"})
    assert r.status_code == 303, r.text
    r = await browser.post(
        f"{here}/search", data={"csrf": token, "input": "which engine needs oil"}
    )
    assert r.status_code == 200, r.text
    scores = [float(s) for s in re.findall(r'<span class="score"[^>]*>(-?[\d.]+)</span>', r.text)]
    assert scores and scores == sorted(scores, reverse=True)
    assert "the diesel engine needs oil" in r.text and ESCAPED in r.text and SCRIPT not in r.text
    r = await browser.post(f"{here}/search", data={"csrf": token, "input": ""})
    assert r.status_code == 400 and 'role="alert"' in r.text

    # RAG: the chat model's answer and the sources it was given.
    ask = {"csrf": token, "model": "tiny", "question": "which engine needs oil"}
    r = await browser.post(f"{here}/rag", data=ask)
    assert r.status_code == 200, r.text
    assert 'data-testid="rag-answer">Hello from the fake model<' in r.text
    sources = r.text.split('data-testid="sources"')[1]
    assert "the diesel engine needs oil" in sources
    r = await browser.post(f"{here}/rag", data={**ask, "model": "nope"})
    assert r.status_code == 404 and "The model `nope` does not exist" in r.text
    assert "which engine needs oil</textarea>" in r.text  # the form as typed

    # Rename (HTML stays text), delete the file and its items, then the collection.
    r = await browser.post(here, data={"csrf": token, "name": "engines"})
    assert r.status_code == 303
    r = await browser.post(here, data={"csrf": token, "name": ""})
    assert r.status_code == 400 and 'role="alert"' in r.text
    assert (await t.client.get(f"/v1/vector_store/{made['id']}")).json()["collection"]["name"] == (
        "engines"
    )
    r = await browser.post(f"{here}/files/{file['id']}/delete", data={"csrf": token})
    assert r.status_code == 303
    items = (await t.client.get(f"/v1/vector_store/{made['id']}/items")).json()["items"]
    assert [i["file_id"] for i in items] == [None]
    r = await browser.post(f"{here}/items/{items[0]['id']}/delete", data={"csrf": token})
    assert r.status_code == 303
    assert "No items." in (await browser.get(here)).text

    # Another org's collection: the API's 404, here and for every action.
    other = await vectors.api.tenant("Other")
    outsider = await signed_in(vectors.api, other.key)
    r = await outsider.get(here)
    assert r.status_code == 404 and f"no collection {made['id']}</p>" in r.text
    theirs = await csrf_of(outsider, "/console/vector-store")
    r = await outsider.post(f"{here}/delete", data={"csrf": theirs})
    assert r.status_code == 404
    r = await browser.post(f"{here}/delete", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/console/vector-store"
    assert (await t.client.get("/v1/vector_store")).json()["collections"] == []
