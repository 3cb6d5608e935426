"""The text of an uploaded file, by kind: plain text and Markdown as they are (UTF-8), HTML
through the standard library's parser (the text outside scripts and styles), PDF through
``pypdf``, DOCX through ``python-docx``. A file that cannot be read raises ``InvalidRequest``
with the reason (its file is ``failed``)."""

from __future__ import annotations

import io
import zipfile
from html.parser import HTMLParser
from pathlib import PurePosixPath

import docx
from docx.opc.exceptions import PackageNotFoundError
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from gpuyard.core.errors import InvalidRequest, UnsupportedMediaType

KINDS = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}
BY_MEDIA_TYPE = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/html": "html",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
}


def kind_of(filename: str, content_type: str | None) -> str:
    """The file's kind, by its extension, else by its media type; 415 for any other."""
    kind = KINDS.get(PurePosixPath(filename).suffix.lower())
    if kind is None and content_type:
        kind = BY_MEDIA_TYPE.get(content_type.split(";", 1)[0].strip().lower())
    if kind is None:
        raise UnsupportedMediaType(
            f"{filename or 'the file'} is not text, Markdown, HTML, PDF or DOCX", param="file"
        )
    return kind


def _unreadable(reason: str) -> InvalidRequest:
    return InvalidRequest(reason, code="unreadable_file", param="file")


def extract_text(kind: str, data: bytes) -> str:
    if kind in ("text", "markdown"):
        return _utf8(data)
    if kind == "html":
        return _html_text(_utf8(data))
    if kind == "pdf":
        return _pdf_text(data)
    if kind == "docx":
        return _docx_text(data)
    raise _unreadable(f"no reader for {kind} files")


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _unreadable(f"the file is not UTF-8 text (byte {exc.start})") from exc


class _TextOfHtml(HTMLParser):
    SKIPPED = frozenset({"script", "style", "template", "noscript"})
    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self._skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED and self._skipping:
            self._skipping -= 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _html_text(html: str) -> str:
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def _pdf_text(data: bytes) -> str:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise _unreadable("the PDF is encrypted")
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise _unreadable(f"the PDF cannot be read: {exc}") from exc


def _docx_text(data: bytes) -> str:
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise _unreadable(f"the DOCX cannot be read: {exc}") from exc
    paragraphs = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            paragraphs.append(" | ".join(cell.text for cell in row.cells))
    return "\n\n".join(paragraphs)
