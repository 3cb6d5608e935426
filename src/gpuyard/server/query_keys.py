"""API keys sent in a URL (the Vast dialect's ``?api_key=``): kept out of logs and of the URLs
gpuyard passes on.

A query parameter is a key when its name, percent-decoded, is ``api_key`` in any case (the server
accepts the key under the decoded name, see ``middleware/asgi.credential``). In a URL written to a
log its value becomes ``[redacted]`` (:func:`redact`); from a query a cluster's replica is sent,
the parameter is removed (:func:`without_keys`). uvicorn's access log writes every request's path
with its query: :func:`install` puts :class:`RedactKeys` on that logger, once per process.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote_plus

REDACTED = "[redacted]"
KEY_PARAMETER = "api_key"
ACCESS_LOGGER = "uvicorn.access"


def _is_key(pair: str) -> bool:
    name = pair.split("=", 1)[0]
    return unquote_plus(name).strip().lower() == KEY_PARAMETER


def redact(url: str) -> str:
    """``url`` (a path with its query, or a whole request line) with every key's value replaced
    by ``[redacted]``."""
    if "?" not in url or "=" not in url:
        return url
    head, query = url.split("?", 1)
    query, space, tail = query.partition(" ")  # a request line: "GET /path?q HTTP/1.1"
    pairs = [
        f"{pair.split('=', 1)[0]}={REDACTED}" if _is_key(pair) else pair
        for pair in query.split("&")
    ]
    return f"{head}?{'&'.join(pairs)}{space}{tail}"


def without_keys(query: str) -> str:
    """A raw query string without its key parameters (the others unchanged, in order)."""
    if not query:
        return query
    return "&".join(pair for pair in query.split("&") if not _is_key(pair))


class RedactKeys(logging.Filter):
    """Redacts keys in a record's string arguments (uvicorn's access log passes the path with its
    query as one) and in its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install(logger_name: str = ACCESS_LOGGER) -> None:
    """Put :class:`RedactKeys` on ``logger_name``, unless it is there already."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactKeys) for f in logger.filters):
        logger.addFilter(RedactKeys())
