"""A key an operator chooses must carry as much randomness as a generated one: random keys of
every usual kind pass, the patterns people type are refused, and a refusal never quotes the key."""

from __future__ import annotations

import base64
import random

import pytest

from gpuyard.core.credentials import looks_like_api_key, new_api_key
from gpuyard.core.key_strength import alphabet_of, weakness

DRAWS = 5_000


def test_generated_keys_pass() -> None:
    for _ in range(200):
        assert weakness(new_api_key()) is None


@pytest.mark.parametrize(
    "make",
    [
        lambda r: base64.urlsafe_b64encode(r.randbytes(32)).decode().rstrip("="),  # token_urlsafe
        lambda r: r.randbytes(32).hex(),  # openssl rand -hex 32
        lambda r: r.randbytes(32).hex().upper(),
        lambda r: base64.urlsafe_b64encode(r.randbytes(48)).decode(),  # openssl rand -base64 48
        lambda r: base64.b32encode(r.randbytes(40)).decode(),
        lambda r: "".join(r.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(52)),
    ],
    ids=["urlsafe-32", "hex-32", "HEX-32", "base64-48", "base32-40", "base36-52"],
)
def test_random_keys_of_every_usual_kind_pass(make: object) -> None:
    rng = random.Random(20260101)  # reproducible draws: the bounds say under 1e-9 fail
    for _ in range(DRAWS):
        key = "vl_" + make(rng)  # type: ignore[operator]
        assert looks_like_api_key(key)
        assert weakness(key) is None, key


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("vl_" + "A" * 43, "hold at most 172 bits"),
        ("vl_" + "a" * 43, "hold at most 172 bits"),
        ("vl_" + "0123456789" * 5, "50 characters of digits"),
        ("vl_" + "5c60e71dd0cf4fb28f02c398337a4a1e0f1e2d3c9a7b", "lowercase hex"),  # 22 bytes
        ("vl_" + "x" * 128, "only 1 different characters"),
        ("vl_" + "Ab" * 30, "only 2 different characters"),
        ("vl_MyCompanyOperatorKey2024-MyCompanyOperatorKey2024", "different characters"),
        ("vl_TheQuickBrownFox-JumpsTheQuickBrownFox-Jumps", "a stretch of 22 characters"),
        ("vl_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ", "runs through 26 characters"),
        ("vl_correct-horse-battery-staple-and-more-words-here", "hold at most 252 bits"),
    ],
)
def test_keys_people_type_are_refused_with_a_reason(key: str, reason: str) -> None:
    assert looks_like_api_key(key)  # the shape is right; the randomness is not
    problem = weakness(key)
    assert problem is not None and reason in problem, problem
    assert key[3:11] not in problem  # never quotes the key


def test_a_repeat_shorter_than_chance_allows_is_fine() -> None:
    key = new_api_key()
    while weakness(key[:20] + key[12:16] + key[20:]) is not None:  # a 4-character repeat
        key = new_api_key()
    assert weakness(key[:20] + key[12:16] + key[20:]) is None


@pytest.mark.parametrize(
    ("body", "name", "size"),
    [
        ("0123", "digits", 10),
        ("00ff", "lowercase hex", 16),
        ("XYZ2", "base32", 32),
        ("xyz9", "lowercase letters and digits", 36),
        ("a-b_", "lowercase letters, digits, - and _", 38),
        ("aZ09", "letters and digits", 62),
        ("aZ-_", "URL-safe base64", 64),
    ],
)
def test_the_smallest_standard_alphabet_is_chosen(body: str, name: str, size: int) -> None:
    assert alphabet_of(body) == (name, size)
