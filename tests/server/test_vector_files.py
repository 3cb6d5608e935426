"""Vector store files: multipart upload, extraction (text, Markdown, HTML, PDF, DOCX), chunking
and embedding by the file controller driven step by step, on SQLite and Postgres."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docx
import httpx
import pytest

from gpuyard.server.controllers.vector_files import VectorFileController
from tests.gateway.kit import openai_error
from tests.server.embedding_server import words
from tests.server.vector_kit import Vectors, add, collection, started

UPLOAD_LIMIT = 256 * 1024


@pytest.fixture
async def vectors(vector_db_url: str, tmp_path: Path) -> AsyncIterator[Vectors]:
    async with started(vector_db_url, tmp_path, max_body_bytes=UPLOAD_LIMIT) as running:
        yield running


def controller(v: Vectors) -> VectorFileController:
    ctx = v.api.ctx
    return VectorFileController(
        sessions=ctx.sessions,
        clock=v.api.clock,
        owner="test",
        ingest=ctx.vectors.file_items,
        with_pgvector=lambda: ctx.vector_search.kind == "pgvector",  # as the runner makes it
    )


def pdf_of(text: str) -> bytes:
    """A one-page PDF that shows ``text`` in Helvetica, with a correct cross-reference table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def docx_of(*paragraphs: str) -> bytes:
    document = docx.Document()
    for p in paragraphs:
        document.add_paragraph(p)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


async def upload(
    client: httpx.AsyncClient, cid: str, name: str, data: bytes, media: str = "text/plain"
) -> httpx.Response:
    return await client.post(f"/v1/vector_store/{cid}/files", files={"file": (name, data, media)})


async def uploaded(client: httpx.AsyncClient, cid: str, name: str, data: bytes) -> dict[str, Any]:
    r = await upload(client, cid, name, data)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()["file"]
    assert made["status"] == "enqueued" and made["size"] == len(data)
    return made


async def file_of(client: httpx.AsyncClient, cid: str, fid: str) -> dict[str, Any]:
    r = await client.get(f"/v1/vector_store/{cid}/files/{fid}")
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()["file"]
    return found


async def search(client: httpx.AsyncClient, cid: str, query: str) -> list[dict[str, Any]]:
    r = await client.post(f"/v1/vector_store/{cid}/search", json={"input": query})
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results


async def test_each_kind_of_file_becomes_items_that_name_it(vectors: Vectors) -> None:
    c = vectors.client
    cid = await collection(c)
    files = {
        "notes.txt": b"the diesel engine needs oil",
        "readme.md": b"# Orchard\n\napples and pears grow in the orchard",
        "page.html": b"<html><head><style>p{color:red}</style><script>var x</script></head>"
        b"<body><p>bananas are yellow fruit</p></body></html>",
        "paper.pdf": pdf_of("a jet engine burns kerosene"),
        "letter.docx": docx_of("electric motors need no oil", "nor do sailing boats"),
    }
    made = {name: await uploaded(c, cid, name, data) for name, data in files.items()}
    listed = (await c.get(f"/v1/vector_store/{cid}/files")).json()["files"]
    assert [f["id"] for f in listed] == [m["id"] for m in made.values()]

    ctl = controller(vectors)
    while await ctl.step():
        pass
    for name, m in made.items():
        done = await file_of(c, cid, m["id"])
        assert done["status"] == "completed", (name, done)
        assert done["items"] == 1 and done["tokens"] > 0, done
        assert done["kind"] == {"txt": "text", "md": "markdown"}.get(
            name.rsplit(".", 1)[1], name.rsplit(".", 1)[1]
        )
    items = (await c.get(f"/v1/vector_store/{cid}/items")).json()["items"]
    by_file = {i["file_id"]: i["content"] for i in items}
    assert by_file[made["page.html"]["id"]] == "bananas are yellow fruit"  # no script, no style
    assert by_file[made["paper.pdf"]["id"]] == "a jet engine burns kerosene"
    assert "electric motors need no oil" in by_file[made["letter.docx"]["id"]]
    assert by_file[made["readme.md"]["id"]].startswith("# Orchard")

    top = await search(c, cid, "jet engine kerosene")
    assert top[0]["content"] == "a jet engine burns kerosene"

    # Deleting a file deletes its items, and search no longer finds them.
    pdf = made["paper.pdf"]["id"]
    assert (await c.delete(f"/v1/vector_store/{cid}/files/{pdf}")).status_code == 204
    openai_error(await c.get(f"/v1/vector_store/{cid}/files/{pdf}"), 404, "file_not_found")
    assert "a jet engine burns kerosene" not in {x["content"] for x in await search(c, cid, "jet")}
    remaining = (await c.get(f"/v1/vector_store/{cid}/items")).json()["items"]
    assert len(remaining) == 4 and pdf not in {i["file_id"] for i in remaining}


async def test_a_long_file_is_cut_into_overlapping_chunks(vectors: Vectors) -> None:
    c = vectors.client
    cid = await collection(c)
    await add(c, cid, "an item of its own")
    sentences = [f"Sentence number {n} talks about topic {n % 7}." for n in range(300)]
    text = " ".join(sentences).encode()
    made = await uploaded(c, cid, "long.txt", text)
    while await controller(vectors).step():
        pass
    done = await file_of(c, cid, made["id"])
    assert done["status"] == "completed"
    assert 12 <= done["items"] <= 20, done
    items = [
        i
        for i in (await c.get(f"/v1/vector_store/{cid}/items", params={"limit": 100})).json()[
            "items"
        ]
        if i["file_id"] == made["id"]
    ]
    assert len(items) == done["items"]
    assert all(len(i["content"]) <= 1000 for i in items)
    joined = " ".join(i["content"] for i in items)
    for s in sentences:
        assert s in joined
    # What the model counted for the chunks, overlaps included (its words, tests' model).
    assert done["tokens"] == sum(len(words(i["content"])) for i in items)


async def test_unreadable_files_fail_with_the_reason_and_write_no_item(vectors: Vectors) -> None:
    c = vectors.client
    cid = await collection(c)
    bad = {
        "broken.pdf": b"%PDF-1.4\nthis is not a pdf at all",
        "latin1.txt": "café".encode("latin-1"),
        "broken.docx": b"PK\x03\x04 not really a zip",
        "blank.md": b"   \n\n  ",
    }
    made = {name: await uploaded(c, cid, name, data) for name, data in bad.items()}
    while await controller(vectors).step():
        pass
    for name, m in made.items():
        done = await file_of(c, cid, m["id"])
        assert done["status"] == "failed", (name, done)
        assert done["status_reason"], done
        assert done["items"] == 0
    assert (await c.get(f"/v1/vector_store/{cid}/items")).json()["items"] == []


async def test_upload_refusals(vectors: Vectors) -> None:
    c = vectors.client
    cid = await collection(c)
    openai_error(
        await upload(c, cid, "tool.exe", b"MZ\x90", "application/octet-stream"),
        415,
        "unsupported_media_type",
    )
    openai_error(await upload(c, cid, "empty.txt", b""), 400, "invalid_request")
    r = await upload(c, cid, "big.txt", b"x" * (UPLOAD_LIMIT + 1))
    assert r.status_code == 413, r.text
    r = await c.post(f"/v1/vector_store/{cid}/files", json={"file": "x"})
    assert r.status_code in (400, 422), r.text
    openai_error(await upload(c, "col_nope", "a.txt", b"x"), 404, "collection_not_found")
    made = await uploaded(c, cid, "a.txt", b"apples")
    other = (await vectors.api.tenant("Other")).client
    openai_error(await upload(other, cid, "a.txt", b"x"), 404, "collection_not_found")
    for method in ("GET", "DELETE"):
        r = await other.request(method, f"/v1/vector_store/{cid}/files/{made['id']}")
        assert r.status_code == 404
    openai_error(await other.get(f"/v1/vector_store/{cid}/files"), 404, "collection_not_found")
    assert [f["id"] for f in (await c.get(f"/v1/vector_store/{cid}/files")).json()["files"]] == [
        made["id"]
    ]


async def test_a_file_waits_while_the_embedding_model_is_down(vectors: Vectors) -> None:
    c = vectors.client
    cid = await collection(c)
    made = await uploaded(c, cid, "a.txt", b"apples and pears")
    vectors.model_server.state.down = True
    ctl = controller(vectors)
    assert await ctl.step() == 1
    assert (await file_of(c, cid, made["id"]))["status"] == "processing"
    assert await ctl.step() == 0  # not before its retry time
    vectors.model_server.state.down = False
    vectors.api.clock.advance(10)
    assert await ctl.step() == 1
    done = await file_of(c, cid, made["id"])
    assert done["status"] == "completed" and done["items"] == 1
