"""The key that signs ``/route/``'s grants: RSA 2048, made once and kept in the database so every
replica signs with the same one (``GET /pubkey/`` serves its public half).

A grant's signature is RSA PKCS#1 v1.5 over SHA-256 of ``json.dumps({"url": url}, indent=4,
sort_keys=True)``, base64: what Vast's worker library checks before it serves a request.
"""

from __future__ import annotations

import base64
import json
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gpuyard.core.clock import Clock
from gpuyard.server import orm

KEY_NAME = "route"


def grant_message(url: str) -> bytes:
    return json.dumps({"url": url}, indent=4, sort_keys=True).encode()


@lru_cache(maxsize=4)
def _private(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


async def _pem(session: AsyncSession, clock: Clock) -> str:
    pem = await session.scalar(
        select(orm.SigningKey.private_pem).where(orm.SigningKey.name == KEY_NAME)
    )
    if pem is not None:
        return pem
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fresh = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    try:
        async with session.begin_nested():  # another replica may make it at the same moment
            session.add(orm.SigningKey(name=KEY_NAME, private_pem=fresh, created_at=clock.now()))
    except IntegrityError:
        pem = await session.scalar(
            select(orm.SigningKey.private_pem).where(orm.SigningKey.name == KEY_NAME)
        )
        assert pem is not None
        return pem
    return fresh


async def sign(session: AsyncSession, *, clock: Clock, url: str) -> str:
    key = _private(await _pem(session, clock))
    signature = key.sign(grant_message(url), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


async def public_pem(session: AsyncSession, *, clock: Clock) -> str:
    key = _private(await _pem(session, clock))
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
