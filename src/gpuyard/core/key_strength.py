"""Whether a key chosen by a person carries as much randomness as one gpuyard generates.

A generated key is ``vl_`` + 32 random bytes (43 URL-safe base64 characters): 256 bits. The
randomness of one given string cannot be measured, only bounded and tested for the patterns that
people, not random draws, produce. A chosen key is refused when:

1. **Too little room.** Its length times the bits of the smallest standard alphabet its
   characters fit in (digits; lowercase or uppercase hex; base32; lowercase or uppercase letters
   and digits, with or without ``-`` and ``_``; letters and digits; URL-safe base64) is under
   256 bits. ``openssl rand -hex 32`` (64 hex characters) has exactly 256; 43 letters and
   digits, 256.04.
2. **Too few distinct characters**: fewer than half of what a random draw of that length from
   that alphabet shows on average (``vl_aaaa…``, ``vl_abcabc…``).
3. **A repeated stretch**: some run of characters occurs twice, long enough that a random key of
   that length and alphabet repeats one with a chance under one in a trillion
   (``vl_MyCompanyKey-MyCompanyKey-…``).
4. **A run of steps**: a run of characters each equal to or next to the one before
   (``abcdefgh…``, ``aaaabbbb…``, ``98765…``), long enough that a random key shows one with a
   chance under one in a trillion.

Each threshold is set so that a key drawn at random (``secrets.token_urlsafe(32)``, ``openssl
rand -hex 32``, ``openssl rand -base64 48`` made URL-safe) is refused with a chance under one in a
billion; the reason given never quotes the key.
"""

from __future__ import annotations

import itertools
import math
import string

from gpuyard.core.credentials import KEY_PREFIX

GENERATED_KEY_BITS = 256
_UNLIKELY = 1e-12

_ALPHABETS: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (name, frozenset(chars))
    for name, chars in (
        ("digits", string.digits),
        ("lowercase hex", "0123456789abcdef"),
        ("uppercase hex", "0123456789ABCDEF"),
        ("base32", string.ascii_uppercase + "234567"),
        ("lowercase base32", string.ascii_lowercase + "234567"),
        ("lowercase letters and digits", string.ascii_lowercase + string.digits),
        ("uppercase letters and digits", string.ascii_uppercase + string.digits),
        ("lowercase letters, digits, - and _", string.ascii_lowercase + string.digits + "-_"),
        ("uppercase letters, digits, - and _", string.ascii_uppercase + string.digits + "-_"),
        ("letters and digits", string.ascii_letters + string.digits),
        ("URL-safe base64", string.ascii_letters + string.digits + "-_"),
    )
)


def alphabet_of(body: str) -> tuple[str, int]:
    """The smallest standard alphabet holding every character of ``body``: its name and size
    (any other characters: their own count, at least 64)."""
    used = set(body)
    for name, chars in _ALPHABETS:
        if used <= chars:
            return name, len(chars)
    return "mixed characters", max(64, len(used))


def weakness(key: str) -> str | None:
    """Why ``key`` (``vl_…``) has less randomness than a generated key, or None if it has as
    much as can be told. The reason never quotes the key."""
    body = key.removeprefix(KEY_PREFIX)
    n = len(body)
    name, size = alphabet_of(body)
    room = n * math.log2(size)
    if room < GENERATED_KEY_BITS:
        return (
            f"{n} characters of {name} hold at most {room:.0f} bits; a generated key has "
            f"{GENERATED_KEY_BITS}"
        )
    distinct = len(set(body))
    expected = size * (1 - (1 - 1 / size) ** n)
    if distinct < expected / 2:
        return (
            f"it uses only {distinct} different characters in {n}; a random key of that length "
            f"uses about {expected:.0f}"
        )
    stretch = _longest_repeat(body)
    if stretch >= _unlikely_repeat(n, size):
        return f"a stretch of {stretch} characters occurs twice in it"
    run = _longest_step_run(body)
    if run >= _unlikely_run(n, size):
        return f"it runs through {run} characters in a row that repeat or count up or down"
    return None


def _longest_repeat(body: str) -> int:
    """The length of the longest substring that occurs at least twice (overlaps allowed)."""
    best = 0
    for length in range(1, len(body)):
        seen: set[str] = set()
        found = False
        for start in range(len(body) - length + 1):
            part = body[start : start + length]
            if part in seen:
                found = True
                break
            seen.add(part)
        if not found:
            break
        best = length
    return best


def _unlikely_repeat(n: int, size: int) -> int:
    """The shortest repeat length that a random string of ``n`` characters from ``size``
    symbols contains with a chance under ``_UNLIKELY`` (a union bound over pairs)."""
    length = 1
    while length < n:
        pairs = math.comb(n - length + 1, 2)
        if pairs * float(size) ** -length < _UNLIKELY:
            return length
        length += 1
    return n


def _longest_step_run(body: str) -> int:
    """The most characters in a row each equal to, or one code point from, the one before."""
    best = run = 1 if body else 0
    for before, after in itertools.pairwise(body):
        run = run + 1 if abs(ord(after) - ord(before)) <= 1 else 1
        best = max(best, run)
    return best


def _unlikely_run(n: int, size: int) -> int:
    """The shortest step run that a random string shows with a chance under ``_UNLIKELY``: each
    step has at most 3 of ``size`` successors (a union bound over starting points)."""
    step = min(1.0, 3 / size)
    length = 2
    while length < n:
        if (n - length + 1) * step ** (length - 1) < _UNLIKELY:
            return length
        length += 1
    return n
