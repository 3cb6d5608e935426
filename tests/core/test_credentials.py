"""Stored key hashes are SHA-256 hex digests, whichever implementation computes them."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from gpuyard.core.credentials import hash_secret, new_api_key


@given(st.text(st.characters(exclude_categories=("Cs",))))  # any text a client can send
def test_a_key_hash_is_the_sha256_of_its_utf8(value: str) -> None:
    assert hash_secret(value) == hashlib.sha256(value.encode()).hexdigest()


def test_a_new_key_hashes_as_openssl_does() -> None:
    key = new_api_key()
    assert hash_secret(key) == hashlib.new("sha256", key.encode()).hexdigest()
