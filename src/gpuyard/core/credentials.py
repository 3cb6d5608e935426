"""API key material: ``vl_`` + 32 random bytes (43 url-safe base64 characters).

Only the SHA-256 of a key is ever stored. The first characters after the prefix are kept as a
display ``prefix`` so that people can tell their keys apart in a list.
"""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "vl_"
_SECRET_BYTES = 32
_KEY_RE = re.compile(r"^vl_[A-Za-z0-9_-]{43,128}$")
DISPLAY_CHARS = 8


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def looks_like_api_key(value: str) -> bool:
    """True for ``vl_`` + at least 43 url-safe characters (32 bytes of entropy or more)."""
    return _KEY_RE.match(value) is not None


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def display_prefix(value: str) -> str:
    return value[: len(KEY_PREFIX) + DISPLAY_CHARS]
