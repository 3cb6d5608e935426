"""Stored key hashes are the hex SHA-256 of the key's UTF-8: keys already stored must keep
matching, so the digest is pinned with known answers."""

from __future__ import annotations

import pytest

from gpuyard.core.credentials import hash_secret, looks_like_api_key, new_api_key

KNOWN = [
    ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    ("é", "4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c"),
]


@pytest.mark.parametrize(("value", "digest"), KNOWN)
def test_a_key_hash_is_the_sha256_of_its_utf8(value: str, digest: str) -> None:
    assert hash_secret(value) == digest


def test_a_new_key_looks_like_a_key_and_hashes_to_64_hex_characters() -> None:
    key = new_api_key()
    assert looks_like_api_key(key)
    digest = hash_secret(key)
    assert len(digest) == 64 and set(digest) <= set("0123456789abcdef")
