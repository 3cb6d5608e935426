"""Requests that carry a NUL character (U+0000) are refused at the edge.

Postgres text and jsonb cannot hold NUL, so a NUL reaching a query fails there (a 500), while
SQLite would store it: refusing it up front answers a clear 400 on both databases. No name, label,
id or other text that gpuyard keeps ever needs one. A NUL arrives percent-encoded in the path or
query (``%00``) or as the ``\\u0000`` escape in a JSON body, in any of the encodings JSON allows.
Other bodies (uploads) may hold any bytes and are not looked at.
"""

from __future__ import annotations

import json
import re

# An escape `\u0000` that is not itself an escaped backslash followed by "u0000".
_JSON_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def nul_location(
    path: str, query_string: bytes, content_type: str | None, body: bytes
) -> str | None:
    """Which part of the request carries a NUL character: "path", "query" or "body"; else None."""
    if "\x00" in path:
        return "path"
    if b"%00" in query_string:
        return "query"
    if body and _is_json(content_type):
        try:
            text = body.decode(json.detect_encoding(body), "surrogatepass")
        except (UnicodeDecodeError, LookupError):
            return None  # not JSON text; the route refuses it
        if _JSON_NUL_ESCAPE.search(text):
            return "body"
    return None


def _is_json(content_type: str | None) -> bool:
    """JSON as the routes parse it: declared so, or (leniently) not declared at all."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")
