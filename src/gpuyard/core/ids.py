"""Opaque prefixed ids (``org_…``, ``key_…``, ``host_…``) and their validation.

An id is a prefix, an underscore and 20 characters of lowercase Crockford base32 (100 random
bits). Ids are opaque to clients; the shape check only lets us answer a clear 404 or 400 for a
string that could never name anything, without asking the database.
"""

from __future__ import annotations

import re
import secrets

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_BODY_LEN = 20

PREFIXES = {
    "org": "organization",
    "key": "API key",
    "evt": "event",
    "idk": "idempotency record",
    "usr": "user",
    "ssh": "SSH key",
    "host": "host",
    "jt": "join token",
    "gpu": "GPU",
    "off": "offer",
    "vm": "instance",
    "wl": "workload",
    "cl": "cluster",
    "ep": "endpoint",
    "wg": "worker group",
    "tpl": "template",
    "wh": "webhook",
    "dlv": "webhook delivery",
    "led": "ledger entry",
    "top": "top-up",
    "req": "request",
    "col": "collection",
    "itm": "item",
    "file": "file",
    "gw": "gateway process",
}

_ID_RE = re.compile(rf"^([a-z]+)_([0-9a-hjkmnp-tv-z]{{{_BODY_LEN}}})$")


# Byte -> character, by its low five bits: each random byte gives one uniform character.
_BY_BYTE = bytes(ord(_ALPHABET[b & 31]) for b in range(256))


def new_id(prefix: str) -> str:
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    # One read of random bytes, mapped in C (every request gets an id, so this is on the
    # request path: a syscall or a Python loop per character was measurable).
    body = secrets.token_bytes(_BODY_LEN).translate(_BY_BYTE).decode("ascii")
    return f"{prefix}_{body}"


def is_id(value: str, prefix: str) -> bool:
    """True when ``value`` has the shape of an id with ``prefix``."""
    m = _ID_RE.match(value)
    return m is not None and m.group(1) == prefix
