"""Requests carrying text that no database column can hold are refused at the edge.

Two things parse as Python strings but are not storable text: the NUL character (U+0000), which
Postgres text and jsonb reject, and an unpaired UTF-16 surrogate (``\\ud800`` alone), which is not
Unicode at all and which neither database driver can encode. Either one reaching a query failed
there (a 500), and SQLite stored a NUL that Postgres would refuse: refusing both up front answers
a clear 400 on both databases. No name, label, id or other text gpuyard keeps ever needs one.

A NUL arrives percent-encoded in the path or query (``%00``; other invalid bytes there decode to
U+FFFD) or in a JSON body, as the ``\\u0000`` escape; a surrogate only in a JSON body, as an escape
or as raw bytes that JSON's decoders let through. Bodies that are not JSON (uploads) may hold any
bytes and are not looked at.
"""

from __future__ import annotations

import json
import re

from gpuyard.server.middleware.asgi import Scope, header

# A JSON escape sequence: `\\` + one character, or `\uXXXX`. Scanning escapes in order keeps an
# escaped backslash followed by "u0000" (the text `\u0000`) from reading as an escape.
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_RAW_SURROGATE = re.compile("[\ud800-\udfff]")
_NUL = "a NUL character (\\u0000)"
_SURROGATE = "an unpaired UTF-16 surrogate (\\ud800-\\udfff); text must be valid Unicode"


def invalid_text(scope: Scope, body: bytes) -> str | None:
    """What is wrong, as "the request <part> holds …", when the request carries text that cannot
    be stored; else None."""
    if "\x00" in scope["path"]:
        return f"the request path holds {_NUL}"
    if b"%00" in scope.get("query_string", b""):
        return f"the request query holds {_NUL}"
    if not body or _plainly_storable(body) or not _is_json(header(scope, b"content-type")):
        return None
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except (UnicodeDecodeError, LookupError):
        return None  # not JSON text; the route refuses it
    problem = _escape_problem(text)
    if problem is None and _RAW_SURROGATE.search(text):
        problem = _SURROGATE
    return f"the request body holds {problem}" if problem else None


def _plainly_storable(body: bytes) -> bool:
    """No NUL or surrogate can be in ``body``: it has no ``\\u`` escape, no NUL byte (so it is not
    UTF-16 or UTF-32) and no 0xED byte (the lead byte of a surrogate written as if UTF-8). Three
    byte searches instead of decoding and scanning the text: most bodies are like this."""
    return b"\\u" not in body and b"\x00" not in body and b"\xed" not in body


def _escape_problem(text: str) -> str | None:
    """The first NUL or unpaired surrogate among the JSON escapes of ``text``."""
    high_ends_at = -1  # where the last high-surrogate escape ended, while awaiting its low half
    for match in _ESCAPE.finditer(text):
        escape = match.group(1)
        code = int(escape[1:], 16) if escape[0] == "u" and len(escape) == 5 else None
        if high_ends_at != -1 and not (
            match.start() == high_ends_at and code is not None and 0xDC00 <= code <= 0xDFFF
        ):
            return _SURROGATE
        if code == 0:
            return _NUL
        if code is not None and 0xD800 <= code <= 0xDBFF:
            high_ends_at = match.end()
        elif code is not None and 0xDC00 <= code <= 0xDFFF and high_ends_at == -1:
            return _SURROGATE
        else:
            high_ends_at = -1
    return _SURROGATE if high_ends_at != -1 else None


def _is_json(content_type: str | None) -> bool:
    """JSON as the routes parse it: declared so, or (leniently) not declared at all."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")
